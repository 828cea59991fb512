"""AdEMAMix: Adam with a mixture of a fast and a slow gradient EMA."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from optimizers._base import Buffer, Impl, MultiPathOptimizer
from optimizers._common import (
    _buckets,
    _check_betas,
    _check_impl,
    _check_nonnegative,
)
from optimizers._fused import apply_fused
from optimizers._native import native_kernel

__all__ = ["AdEMAMix"]


class AdEMAMix(MultiPathOptimizer):
    r"""AdEMAMix (Pagliardini, Ablin and Grangier, 2024), Algorithm 1 of the paper.

    With ``t`` the step count of a parameter (starting at 1) and ``g`` its gradient::

        alpha_t = min(t * alpha / alpha_warmup, alpha)          (alpha if no warm-up)
        beta3_t = min(exp(ln(b1) * ln(b3) / ((1 - t/T) * ln(b3) + (t/T) * ln(b1))), b3)
                  with T = beta3_warmup                          (b3 if no warm-up or t >= T)
        m1 <- b1 * m1 + (1 - b1) * g                            fast EMA
        m2 <- beta3_t * m2 + (1 - beta3_t) * g                  slow EMA, not bias-corrected
        nu <- b2 * nu + (1 - b2) * g^2
        m1_hat = m1 / (1 - b1^t);  nu_hat = nu / (1 - b2^t)
        theta <- theta - lr * ((m1_hat + alpha_t * m2) / (sqrt(nu_hat) + eps)
                               + weight_decay * theta)

    The weight-decay term uses ``theta`` from before the step (decoupled, AdamW-style).
    The beta3 schedule interpolates linearly in ``1 / ln(beta)``, i.e. in the EMA's
    half-life, from ``b1`` at ``t = 0`` to ``b3`` at ``t = T``. With ``b1 = 0`` its
    limit ``b3 ** (T / t)`` is used.

    With ``betas[0] == 0`` the fast EMA is the gradient itself and no ``m1`` buffer is
    kept: the optimizer then stores two buffers per parameter, as Adam does.

    State per parameter: ``step`` (float32 CPU tensor, as in ``torch.optim``),
    ``exp_avg`` (``m1``, only when ``betas[0] > 0``), ``exp_avg_slow`` (``m2``) and
    ``exp_avg_sq`` (``nu``). Buffers have the parameter's dtype, so bf16 parameters
    keep bf16 state (and bf16 arithmetic in the update).

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: learning rate (default: 1e-3).
        betas: ``(b1, b2, b3)``, the fast-EMA, second-moment and slow-EMA coefficients,
            each in [0, 1) (default: (0.9, 0.999, 0.9999)).
        alpha: weight of the slow EMA, >= 0 (default: 5.0).
        alpha_warmup: steps of the linear alpha warm-up, an int >= 1, or ``None`` for
            none (default: None). The paper sets it to the run's length.
        beta3_warmup: steps of the beta3 warm-up, an int >= 1, or ``None`` for none
            (default: None). The paper sets it to the run's length.
        eps: term added to the denominator, >= 0 (default: 1e-8).
        weight_decay: decoupled weight-decay coefficient, >= 0 (default: 0).
        foreach: use the multi-tensor (``torch._foreach_*``) implementation; ``None``
            means yes unless ``fused`` (default: None).
        fused: compile each tensor's whole update into one pass with
            ``torch.compile`` (see :mod:`optimizers._fused`): the same kernel as the
            reference path, close to the memory-traffic floor. Cannot be combined
            with ``foreach=True`` (default: None, i.e. no).
            On the CPU, float32 and float64 tensors run a native kernel of the same
            operations instead (see :mod:`optimizers._native`).

    Sparse gradients are not supported (``RuntimeError``).

    References:
        Pagliardini, Ablin, Grangier. The AdEMAMix Optimizer: Better, Faster, Older.
        https://arxiv.org/abs/2409.03137
    """

    update_keys = ("lr", "alpha", "alpha_warmup", "beta3_warmup", "eps", "weight_decay")
    late_defaults = MappingProxyType({"alpha_warmup": None, "beta3_warmup": None})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        alpha: float = 5.0,
        alpha_warmup: int | None = None,
        beta3_warmup: int | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_impl(foreach, fused)
        _check_nonnegative("learning rate", lr)
        _check_betas(betas, 3)
        _check_nonnegative("alpha value", alpha)
        _check_warmup("alpha_warmup", alpha_warmup)
        _check_warmup("beta3_warmup", beta3_warmup)
        _check_nonnegative("epsilon value", eps)
        _check_nonnegative("weight_decay value", weight_decay)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "alpha": alpha,
            "alpha_warmup": alpha_warmup,
            "beta3_warmup": beta3_warmup,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def _buffers(self, group: dict[str, Any]) -> tuple[Buffer, ...]:
        # With b1 = 0 the fast EMA is the gradient itself: no buffer.
        return (("exp_avg", group["betas"][0] > 0.0), ("exp_avg_slow", True), ("exp_avg_sq", True))

    def _paths(self) -> tuple[Impl, Impl, Impl]:
        return _single_tensor_ademamix, _multi_tensor_ademamix, _fused_ademamix


def _check_warmup(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {name} value: {value} (must be an integer >= 1 or None)")


def _alpha_at(step: int, alpha: float, warmup: int | None) -> float:
    """Linear warm-up of the slow-EMA weight."""
    if warmup is None:
        return alpha
    return min(step * alpha / warmup, alpha)


def _beta3_at(step: int, beta1: float, beta3: float, warmup: int | None) -> float:
    """The paper's beta3 scheduler: linear in the half-life, from beta1 to beta3."""
    if warmup is None or step >= warmup or beta3 == 0.0:
        return beta3
    frac = step / warmup
    log_b3 = math.log(beta3)
    if beta1 == 0.0:
        # The limit of the formula below as ln(beta1) -> -inf.
        return min(math.exp(log_b3 / frac), beta3)
    log_b1 = math.log(beta1)
    return min(math.exp(log_b1 * log_b3 / ((1.0 - frac) * log_b3 + frac * log_b1)), beta3)


def _ademamix_scalars(
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    beta3: float,
    alpha: float,
    alpha_warmup: int | None,
    beta3_warmup: int | None,
    eps: float,
    weight_decay: float,
) -> dict[str, float]:
    """Every scalar of one step at step count ``step``: schedules, bias corrections."""
    beta3_t = _beta3_at(step, beta1, beta3, beta3_warmup)
    return {
        "beta1": beta1,
        "one_minus_beta1": 1.0 - beta1,
        "beta2": beta2,
        "one_minus_beta2": 1.0 - beta2,
        "beta3": beta3_t,
        "one_minus_beta3": 1.0 - beta3_t,
        "alpha": _alpha_at(step, alpha, alpha_warmup),
        "inv_bias_correction1": 1.0 / (1.0 - beta1**step),
        "inv_sqrt_bias_correction2": 1.0 / math.sqrt(1.0 - beta2**step),
        "eps": eps,
        "decay": 1.0 - lr * weight_decay,
        "lr": lr,
    }


def _ademamix_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor | None,
    exp_avg_slow: Tensor,
    exp_avg_sq: Tensor,
    *,
    beta1: Any,
    one_minus_beta1: Any,
    beta2: Any,
    one_minus_beta2: Any,
    beta3: Any,
    one_minus_beta3: Any,
    alpha: Any,
    inv_bias_correction1: Any,
    inv_sqrt_bias_correction2: Any,
    eps: Any,
    decay: Any,
    lr: Any,
) -> None:
    """One AdEMAMix step for one tensor; mutates ``param`` and the state in place.

    Tensor-polymorphic (see :mod:`optimizers._fused`): the scalars, from
    :func:`_ademamix_scalars`, are Python floats on the reference path and 0-d
    tensors on the fused one. ``exp_avg`` is ``None`` exactly when ``beta1 == 0``
    (the fast EMA is ``grad``).
    """
    exp_avg_slow.mul_(beta3).add_(grad * one_minus_beta3)
    exp_avg_sq.mul_(beta2).add_(grad * grad * one_minus_beta2)
    if exp_avg is None:
        numerator = grad + exp_avg_slow * alpha
    else:
        exp_avg.mul_(beta1).add_(grad * one_minus_beta1)
        numerator = exp_avg * inv_bias_correction1 + exp_avg_slow * alpha
    denom = exp_avg_sq.sqrt() * inv_sqrt_bias_correction2 + eps
    param.mul_(decay).sub_(numerator * lr / denom)


def _single_tensor_ademamix(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_slows: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    **hparams: Any,
) -> None:
    """Reference path: ``_ademamix_kernel`` run eagerly on each tensor in turn."""
    for i, param in enumerate(params):
        exp_avg = exp_avgs[i] if exp_avgs else None
        _ademamix_kernel(
            param,
            grads[i],
            exp_avg,
            exp_avg_slows[i],
            exp_avg_sqs[i],
            **_ademamix_scalars(steps[i], **hparams),
        )


# The native CPU kernel (csrc/ademamix.cpp) reads these of _ademamix_scalars'
# coefficients.
_NATIVE = native_kernel(
    "ademamix",
    width=5,
    scalars=(
        "beta1",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "beta3",
        "one_minus_beta3",
        "alpha",
        "inv_bias_correction1",
        "inv_sqrt_bias_correction2",
        "eps",
        "decay",
        "lr",
    ),
)


def _fused_ademamix(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_slows: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    **hparams: Any,
) -> None:
    """Fused path: ``_ademamix_kernel`` compiled, one pass per tensor, or on the CPU
    the native kernel (:mod:`optimizers._native`)."""

    def scalars(step: int) -> dict[str, float]:
        return _ademamix_scalars(step, **hparams)

    tensors = [params, grads, exp_avgs, exp_avg_slows, exp_avg_sqs]
    rest, rest_steps = _NATIVE.run_buckets(tensors, steps, scalars)
    apply_fused(_ademamix_kernel, rest, rest_steps, scalars)


def _multi_tensor_ademamix(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_slows: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    beta3: float,
    alpha: float,
    alpha_warmup: int | None,
    beta3_warmup: int | None,
    eps: float,
    weight_decay: float,
) -> None:
    """The math of ``_ademamix_kernel`` with ``torch._foreach_*`` ops.

    Tensors are bucketed by device, dtype and step count, so every scalar of a
    bucket (bias corrections, scheduled alpha and beta3) is a single Python float.
    """
    for (_, _, step), idx in _buckets(params, steps).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m2 = [exp_avg_slows[i] for i in idx]
        nu = [exp_avg_sqs[i] for i in idx]
        beta3_t = _beta3_at(step, beta1, beta3, beta3_warmup)
        alpha_t = _alpha_at(step, alpha, alpha_warmup)
        torch._foreach_mul_(m2, beta3_t)
        torch._foreach_add_(m2, g, alpha=1.0 - beta3_t)
        torch._foreach_mul_(nu, beta2)
        torch._foreach_addcmul_(nu, g, g, value=1.0 - beta2)
        if not exp_avgs:
            numerator = torch._foreach_add(g, m2, alpha=alpha_t)
        else:
            m1 = [exp_avgs[i] for i in idx]
            torch._foreach_mul_(m1, beta1)
            torch._foreach_add_(m1, g, alpha=1.0 - beta1)
            numerator = torch._foreach_div(m1, 1.0 - beta1**step)
            torch._foreach_add_(numerator, m2, alpha=alpha_t)
        denom = torch._foreach_sqrt(nu)
        torch._foreach_div_(denom, math.sqrt(1.0 - beta2**step))
        torch._foreach_add_(denom, eps)
        if weight_decay != 0.0:
            torch._foreach_mul_(p, 1.0 - lr * weight_decay)
        torch._foreach_addcdiv_(p, numerator, denom, value=-lr)
