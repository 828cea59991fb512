"""RAdam: Adam with a rectified adaptive learning rate (Liu et al., 2019)."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from optimizers._base import Impl, MultiPathOptimizer
from optimizers._common import (
    _buckets,
    _check_betas,
    _check_flag,
    _check_impl,
    _check_nonnegative,
)
from optimizers._fused import apply_fused
from optimizers._native import native_kernel

__all__ = ["RAdam"]


class RAdam(MultiPathOptimizer):
    r"""Rectified Adam (Liu et al., 2019), Algorithm 2 of the paper.

    With ``t`` the step count of a parameter (starting at 1), ``g`` its gradient and
    ``lambda`` the weight decay::

        if decoupled_weight_decay:  theta <- theta * (1 - lr * lambda)
        else:                       g <- g + lambda * theta
        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g^2
        m_hat = m / (1 - b1^t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
        if rho_t > 5:                               variance is tractable
            r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            theta <- theta - lr * r_t * m_hat * sqrt(1 - b2^t) / (sqrt(v) + eps)
        else:                                       warm-up: momentum SGD
            theta <- theta - lr * m_hat

    ``eps`` is added to ``sqrt(v)`` before the bias correction of ``v``, exactly as
    ``torch.optim.RAdam`` does, so the two agree to rounding (tested to 1e-6 over 200
    steps); this equals ``m_hat / (sqrt(v_hat) + eps / sqrt(1 - b2^t))`` with
    ``v_hat = v / (1 - b2^t)``.

    State per parameter, with the names ``torch.optim.RAdam`` uses (so its state dicts
    load here): ``step`` (float32 CPU tensor), ``exp_avg`` (``m``) and ``exp_avg_sq``
    (``v``). Buffers have the parameter's dtype: bf16 parameters keep bf16 state.

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: learning rate, >= 0 (default: 1e-3).
        betas: ``(b1, b2)``, coefficients of the running averages of the gradient and
            of its square, each in [0, 1) (default: (0.9, 0.999)). With ``b2 < 2/3``,
            ``rho_inf < 5`` and the rectified step never switches on.
        eps: term added to the denominator, >= 0 (default: 1e-8).
        weight_decay: weight-decay coefficient, >= 0 (default: 0).
        decoupled_weight_decay: decay the weights directly (AdamW-style, as the
            authors' code does) instead of adding an L2 term to the gradient
            (default: False).
        foreach: use the multi-tensor (``torch._foreach_*``) implementation; ``None``
            means yes unless ``fused`` (default: None).
        fused: compile each tensor's whole update into one pass with
            ``torch.compile`` (see :mod:`optimizers._fused`): the same kernel as the
            reference path, close to the memory-traffic floor. Cannot be combined
            with ``foreach=True`` (default: None, i.e. no).
            On the CPU, float32 and float64 tensors run a native kernel of the same
            operations instead (see :mod:`optimizers._native`).

    Sparse gradients and complex parameters are not supported (``RuntimeError``).

    References:
        Liu, Jiang, He, Chen, Liu, Gao, Han. On the Variance of the Adaptive Learning
        Rate and Beyond. ICLR 2020. https://arxiv.org/abs/1908.03265
    """

    update_keys = ("lr", "eps", "weight_decay", "decoupled_weight_decay")
    late_defaults = MappingProxyType({"decoupled_weight_decay": False})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_impl(foreach, fused)
        _check_nonnegative("learning rate", lr)
        _check_betas(betas)
        _check_nonnegative("epsilon value", eps)
        _check_nonnegative("weight_decay value", weight_decay)
        _check_flag("decoupled_weight_decay", decoupled_weight_decay)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def _paths(self) -> tuple[Impl, Impl, Impl]:
        return _single_tensor_radam, _multi_tensor_radam, _fused_radam


def _rectification(step: int, beta2: float) -> float | None:
    """``r_t`` when the variance of the adaptive LR is tractable (``rho_t > 5``), else None."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2**step / (1.0 - beta2**step)
    if rho_t <= 5.0:
        return None
    ratio = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
    return math.sqrt(ratio)


def _radam_scalars(
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
) -> dict[str, float | None]:
    """Every scalar of one step at step count ``step``.

    A weight-decay term that does not apply is ``None`` (structural: no operation
    in the kernel) rather than a multiply by 1 or an add of ``0 * theta``, which
    is ``nan`` where ``theta`` is infinite. The warm-up/rectified switch is a value,
    not a branch: ``sgd_step_size`` is ``lr / (1 - b1^t)`` during the warm-up and 0
    after it, ``adaptive_step_size`` ``lr * r_t * sqrt(1 - b2^t) / (1 - b1^t)`` once
    rectified and 0 before, and
    ``denom_shift`` (1 during the warm-up, 0 after) keeps the unused adaptive term
    finite (``0 / 1``) when ``eps == 0`` and ``v == 0``.
    """
    decays = decoupled_weight_decay and weight_decay != 0.0
    adds_l2 = not decoupled_weight_decay and weight_decay != 0.0
    bias_correction1 = 1.0 - beta1**step
    rect = _rectification(step, beta2)
    if rect is None:
        sgd_step_size, adaptive_step_size, denom_shift = lr / bias_correction1, 0.0, 1.0
    else:
        sgd_step_size, denom_shift = 0.0, 0.0
        adaptive_step_size = lr * rect * math.sqrt(1.0 - beta2**step) / bias_correction1
    return {
        "decay": 1.0 - lr * weight_decay if decays else None,
        "l2": weight_decay if adds_l2 else None,
        "beta1": beta1,
        "one_minus_beta1": 1.0 - beta1,
        "beta2": beta2,
        "one_minus_beta2": 1.0 - beta2,
        "eps": eps,
        "sgd_step_size": sgd_step_size,
        "adaptive_step_size": adaptive_step_size,
        "denom_shift": denom_shift,
    }


def _radam_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    *,
    decay: Any,
    l2: Any,
    beta1: Any,
    one_minus_beta1: Any,
    beta2: Any,
    one_minus_beta2: Any,
    eps: Any,
    sgd_step_size: Any,
    adaptive_step_size: Any,
    denom_shift: Any,
) -> None:
    """One RAdam step for one tensor; mutates ``param`` and the moments in place.

    Tensor-polymorphic (see :mod:`optimizers._fused`): the scalars, from
    :func:`_radam_scalars`, are Python floats on the reference path and 0-d tensors
    on the fused one. Exactly one of the two step sizes is non-zero, so the update
    is ``lr * m_hat`` during the warm-up and the rectified adaptive step after it.
    """
    if decay is not None:
        param.mul_(decay)
    if l2 is not None:
        grad = grad + param * l2
    exp_avg.mul_(beta1).add_(grad * one_minus_beta1)
    exp_avg_sq.mul_(beta2).add_(grad * grad * one_minus_beta2)
    adaptive = adaptive_step_size / (exp_avg_sq.sqrt() + eps + denom_shift)
    param.sub_(exp_avg * (adaptive + sgd_step_size))


def _single_tensor_radam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    **hparams: Any,
) -> None:
    """Reference path: ``_radam_kernel`` run eagerly on each tensor in turn."""
    for i, param in enumerate(params):
        _radam_kernel(
            param, grads[i], exp_avgs[i], exp_avg_sqs[i], **_radam_scalars(steps[i], **hparams)
        )


# The native CPU kernel (csrc/radam.cpp) reads these of _radam_scalars' coefficients.
_NATIVE = native_kernel(
    "radam",
    width=4,
    scalars=(
        "decay",
        "l2",
        "beta1",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "eps",
        "sgd_step_size",
        "adaptive_step_size",
        "denom_shift",
    ),
)


def _fused_radam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    **hparams: Any,
) -> None:
    """Fused path: ``_radam_kernel`` compiled, one pass per tensor, or on the CPU
    the native kernel (:mod:`optimizers._native`)."""

    def scalars(step: int) -> dict[str, float | None]:
        return _radam_scalars(step, **hparams)

    tensors = [params, grads, exp_avgs, exp_avg_sqs]
    rest, rest_steps = _NATIVE.run_buckets(tensors, steps, scalars)
    apply_fused(_radam_kernel, rest, rest_steps, scalars)


def _multi_tensor_radam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
) -> None:
    """The math of ``_radam_kernel`` with ``torch._foreach_*`` ops.

    Tensors are bucketed by device, dtype and step count, so the bias corrections and
    the rectification of a bucket are single Python floats.
    """
    for (_, _, step), idx in _buckets(params, steps).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m = [exp_avgs[i] for i in idx]
        v = [exp_avg_sqs[i] for i in idx]
        if weight_decay != 0.0:
            if decoupled_weight_decay:
                torch._foreach_mul_(p, 1.0 - lr * weight_decay)
            else:
                g = list(torch._foreach_add(g, p, alpha=weight_decay))
        torch._foreach_lerp_(m, g, 1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1.0 - beta2)
        bias_correction1 = 1.0 - beta1**step
        rect = _rectification(step, beta2)
        if rect is None:
            torch._foreach_add_(p, m, alpha=-lr / bias_correction1)
            continue
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, eps)
        step_size = lr * rect * math.sqrt(1.0 - beta2**step) / bias_correction1
        torch._foreach_addcdiv_(p, m, denom, value=-step_size)
