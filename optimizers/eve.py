"""EVE: short- and long-term moments with two learning rates."""

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
    _check_flag,
    _check_impl,
    _check_nonnegative,
    _is_number,
)
from optimizers._fused import apply_fused
from optimizers._native import native_kernel

__all__ = ["EVE"]


class EVE(MultiPathOptimizer):
    r"""EVE (Khadangi, 2023), as in its author's TensorFlow implementation.

    With ``t`` the step count of a parameter (starting at 1) and ``g`` its gradient::

        mS <- b1 * mS + (1 - b1) * g                     short-term first moment
        mL <- b2 * mL + (1 - b2) * g                     long-term first moment
        vS <- b2 * vS + (1 - b2) * (g - sqrt(vL))^2      uses vL from the previous step
        vL <- alpha * vL + (1 - alpha) * (g - sqrt(vS))^2    uses the new vS
        vS_max <- max(vS_max, vS)                        (amsgrad only)
        a1 = lr  * sqrt(1 - alpha^t) / (1 - b1^t)
        a2 = lr2 * sqrt(1 - alpha^t) / (1 - b2^t)
        m = b3 * mS + (1 - b3) * mL
        theta <- theta - lr * weight_decay * theta       decoupled, before the update
        theta <- theta - 1/2 * (a1 / (sqrt(vL) + eps) + a2 / (sqrt(vS) + eps)) * m

    With ``amsgrad``, ``vS_max`` replaces ``vS`` in the last line (the recursion of
    ``vL`` still uses ``vS``). The second moments are centred on the other moment's
    root, so the update is not an odd function of the gradient: ``g`` and ``-g`` do
    not give opposite steps.

    **lr2 follows lr.** Each param group records ``lr_ref``, its ``lr`` when the group
    was added; a step uses ``lr2 * lr / lr_ref``. A schedule that scales ``lr``
    (``torch.optim.lr_scheduler``, which only writes ``group["lr"]``) thus scales
    ``lr2`` in proportion, and an unscheduled run uses ``lr2`` exactly. A group
    created with ``lr = 0`` keeps ``lr2`` fixed. Writing ``group["lr2"]`` changes the
    second rate at ``lr_ref``.

    State per parameter: ``step`` (float32 CPU tensor), ``exp_avg_short`` (``mS``),
    ``exp_avg_long`` (``mL``), ``exp_avg_sq_short`` (``vS``), ``exp_avg_sq_long``
    (``vL``) and, with amsgrad, ``max_exp_avg_sq_short``. Buffers have the parameter's
    dtype, so bf16 parameters keep bf16 state (and bf16 arithmetic in the update).

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: learning rate of the long-term denominator term (default: 1e-3).
        lr2: learning rate of the short-term denominator term, >= 0 (default: 4e-4).
        betas: ``(b1, b2, b3)``: short and long EMA coefficients in [0, 1), and the
            mixing weight of ``mS`` in [0, 1] (default: (0.9, 0.99, 0.5)).
        alpha: EMA coefficient of ``vL`` in [0, 1) (default: 0.999).
        eps: term added to both denominators, >= 0 (default: 1e-7).
        weight_decay: decoupled weight-decay coefficient, >= 0 (default: 0).
        amsgrad: use the running maximum of ``vS`` (default: False).
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
        Khadangi. We Don't Need No Adam, All We Need Is EVE: On The Variance of Dual
        Learning Rate And Beyond. https://arxiv.org/abs/2308.10740
    """

    update_keys = ("lr", "alpha", "eps", "weight_decay")
    late_defaults = MappingProxyType({"amsgrad": False})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        lr2: float = 4e-4,
        betas: tuple[float, float, float] = (0.9, 0.99, 0.5),
        alpha: float = 0.999,
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_impl(foreach, fused)
        _check_nonnegative("learning rate", lr)
        _check_nonnegative("lr2 value", lr2)
        _check_flag("amsgrad", amsgrad)
        if len(betas) != 3:
            raise ValueError(f"Invalid betas: {betas!r} (expected 3 values)")
        for index, beta in enumerate(betas):
            # beta3 is a mixing weight, so 1 (only mS) is allowed.
            ok = 0.0 <= beta <= 1.0 if index == 2 else 0.0 <= beta < 1.0
            if not (_is_number(beta) and ok):
                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
        if not (_is_number(alpha) and 0.0 <= alpha < 1.0):
            raise ValueError(f"Invalid alpha value: {alpha} (must be in [0, 1))")
        _check_nonnegative("epsilon value", eps)
        _check_nonnegative("weight_decay value", weight_decay)
        defaults = {
            "lr": lr,
            "lr2": lr2,
            "betas": tuple(betas),
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, recording the ``lr`` its ``lr2`` refers to (``lr_ref``)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("lr_ref", group["lr"])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("lr_ref", group["lr"])

    def _buffers(self, group: dict[str, Any]) -> tuple[Buffer, ...]:
        return (
            ("exp_avg_short", True),
            ("exp_avg_long", True),
            ("exp_avg_sq_short", True),
            ("exp_avg_sq_long", True),
            ("max_exp_avg_sq_short", group["amsgrad"]),
        )

    def _paths(self) -> tuple[Impl, Impl, Impl]:
        return _single_tensor_eve, _multi_tensor_eve, _fused_eve

    def _hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {**super()._hyperparameters(group), "lr2": _effective_lr2(group)}


def _effective_lr2(group: dict[str, Any]) -> float:
    """``lr2`` scaled by how far a schedule has moved ``lr`` from ``lr_ref``."""
    lr_ref = group["lr_ref"]
    if lr_ref == 0:
        return float(group["lr2"])
    return float(group["lr2"] * (group["lr"] / lr_ref))


def _step_sizes(
    step: int, lr: float, lr2: float, beta1: float, beta2: float, alpha: float
) -> tuple[float, float]:
    """``(a1, a2)``: both rates carry alpha's bias correction in a square root."""
    root = math.sqrt(1.0 - alpha**step)
    return lr * root / (1.0 - beta1**step), lr2 * root / (1.0 - beta2**step)


def _eve_scalars(
    step: int,
    *,
    lr: float,
    lr2: float,
    beta1: float,
    beta2: float,
    beta3: float,
    alpha: float,
    eps: float,
    weight_decay: float,
) -> dict[str, float]:
    """Every scalar of one step at step count ``step``; the step sizes are halved here."""
    a1, a2 = _step_sizes(step, lr, lr2, beta1, beta2, alpha)
    return {
        "decay": 1.0 - lr * weight_decay,
        "beta1": beta1,
        "one_minus_beta1": 1.0 - beta1,
        "beta2": beta2,
        "one_minus_beta2": 1.0 - beta2,
        "beta3": beta3,
        "one_minus_beta3": 1.0 - beta3,
        "alpha": alpha,
        "one_minus_alpha": 1.0 - alpha,
        "eps": eps,
        "half_a1": 0.5 * a1,
        "half_a2": 0.5 * a2,
    }


def _eve_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg_short: Tensor,
    exp_avg_long: Tensor,
    exp_avg_sq_short: Tensor,
    exp_avg_sq_long: Tensor,
    max_exp_avg_sq_short: Tensor | None,
    *,
    decay: Any,
    beta1: Any,
    one_minus_beta1: Any,
    beta2: Any,
    one_minus_beta2: Any,
    beta3: Any,
    one_minus_beta3: Any,
    alpha: Any,
    one_minus_alpha: Any,
    eps: Any,
    half_a1: Any,
    half_a2: Any,
) -> None:
    """One EVE step for one tensor; mutates ``param`` and the state in place.

    Tensor-polymorphic (see :mod:`optimizers._fused`): the scalars, from
    :func:`_eve_scalars`, are Python floats on the reference path and 0-d tensors on
    the fused one. ``max_exp_avg_sq_short`` is ``None`` exactly when amsgrad is off.
    """
    param.mul_(decay)
    exp_avg_short.mul_(beta1).add_(grad * one_minus_beta1)
    exp_avg_long.mul_(beta2).add_(grad * one_minus_beta2)
    deviation = grad - exp_avg_sq_long.sqrt()
    exp_avg_sq_short.mul_(beta2).add_(deviation * deviation * one_minus_beta2)
    deviation = grad - exp_avg_sq_short.sqrt()
    exp_avg_sq_long.mul_(alpha).add_(deviation * deviation * one_minus_alpha)
    short = exp_avg_sq_short
    if max_exp_avg_sq_short is not None:
        max_exp_avg_sq_short.copy_(torch.maximum(max_exp_avg_sq_short, exp_avg_sq_short))
        short = max_exp_avg_sq_short
    rate = half_a1 / (exp_avg_sq_long.sqrt() + eps) + half_a2 / (short.sqrt() + eps)
    param.sub_(rate * (exp_avg_short * beta3 + exp_avg_long * one_minus_beta3))


def _single_tensor_eve(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avg_shorts: list[Tensor],
    exp_avg_longs: list[Tensor],
    exp_avg_sq_shorts: list[Tensor],
    exp_avg_sq_longs: list[Tensor],
    max_exp_avg_sq_shorts: list[Tensor],
    steps: list[int],
    **hparams: Any,
) -> None:
    """Reference path: ``_eve_kernel`` run eagerly on each tensor in turn."""
    for i, param in enumerate(params):
        _eve_kernel(
            param,
            grads[i],
            exp_avg_shorts[i],
            exp_avg_longs[i],
            exp_avg_sq_shorts[i],
            exp_avg_sq_longs[i],
            max_exp_avg_sq_shorts[i] if max_exp_avg_sq_shorts else None,
            **_eve_scalars(steps[i], **hparams),
        )


# The native CPU kernel (csrc/eve.cpp) reads these of _eve_scalars' coefficients.
_NATIVE = native_kernel(
    "eve",
    width=7,
    scalars=(
        "decay",
        "beta1",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "beta3",
        "one_minus_beta3",
        "alpha",
        "one_minus_alpha",
        "eps",
        "half_a1",
        "half_a2",
    ),
)


def _fused_eve(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avg_shorts: list[Tensor],
    exp_avg_longs: list[Tensor],
    exp_avg_sq_shorts: list[Tensor],
    exp_avg_sq_longs: list[Tensor],
    max_exp_avg_sq_shorts: list[Tensor],
    steps: list[int],
    **hparams: Any,
) -> None:
    """Fused path: ``_eve_kernel`` compiled, one pass per tensor, or on the CPU the
    native kernel (:mod:`optimizers._native`)."""
    tensors = [
        params,
        grads,
        exp_avg_shorts,
        exp_avg_longs,
        exp_avg_sq_shorts,
        exp_avg_sq_longs,
        max_exp_avg_sq_shorts,
    ]

    def scalars(step: int) -> dict[str, float]:
        return _eve_scalars(step, **hparams)

    rest, rest_steps = _NATIVE.run_buckets(tensors, steps, scalars)
    apply_fused(_eve_kernel, rest, rest_steps, scalars)


def _multi_tensor_eve(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avg_shorts: list[Tensor],
    exp_avg_longs: list[Tensor],
    exp_avg_sq_shorts: list[Tensor],
    exp_avg_sq_longs: list[Tensor],
    max_exp_avg_sq_shorts: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    lr2: float,
    beta1: float,
    beta2: float,
    beta3: float,
    alpha: float,
    eps: float,
    weight_decay: float,
) -> None:
    """The math of ``_eve_kernel`` with ``torch._foreach_*`` ops.

    Tensors are bucketed by device, dtype and step count, so the step sizes of a
    bucket are single Python floats.
    """
    for (_, _, step), idx in _buckets(params, steps).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m_s, m_l = [exp_avg_shorts[i] for i in idx], [exp_avg_longs[i] for i in idx]
        v_s, v_l = [exp_avg_sq_shorts[i] for i in idx], [exp_avg_sq_longs[i] for i in idx]
        a1, a2 = _step_sizes(step, lr, lr2, beta1, beta2, alpha)
        if weight_decay != 0.0:
            torch._foreach_mul_(p, 1.0 - lr * weight_decay)
        torch._foreach_mul_(m_s, beta1)
        torch._foreach_add_(m_s, g, alpha=1.0 - beta1)
        torch._foreach_mul_(m_l, beta2)
        torch._foreach_add_(m_l, g, alpha=1.0 - beta2)
        deviation = torch._foreach_sub(g, torch._foreach_sqrt(v_l))
        torch._foreach_mul_(v_s, beta2)
        torch._foreach_addcmul_(v_s, deviation, deviation, value=1.0 - beta2)
        deviation = torch._foreach_sub(g, torch._foreach_sqrt(v_s))
        torch._foreach_mul_(v_l, alpha)
        torch._foreach_addcmul_(v_l, deviation, deviation, value=1.0 - alpha)
        short = v_s
        if max_exp_avg_sq_shorts:
            short = [max_exp_avg_sq_shorts[i] for i in idx]
            torch._foreach_maximum_(short, v_s)
        rate = _foreach_inverse_root(v_l, eps)
        torch._foreach_mul_(rate, a1)
        torch._foreach_add_(rate, _foreach_inverse_root(short, eps), alpha=a2)
        momentum = torch._foreach_mul(m_s, beta3)
        torch._foreach_add_(momentum, m_l, alpha=1.0 - beta3)
        torch._foreach_addcmul_(p, rate, momentum, value=-0.5)


def _foreach_inverse_root(tensors: list[Tensor], eps: float) -> list[Tensor]:
    """``1 / (sqrt(x) + eps)`` for each tensor, as new tensors."""
    out = torch._foreach_sqrt(tensors)
    torch._foreach_add_(out, eps)
    torch._foreach_reciprocal_(out)
    return list(out)
