"""SET-Adam: Adam whose second moment is scaled, eps-embedded and translated per layer."""

from __future__ import annotations

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
    _is_number,
)
from optimizers._fused import REDUCE_AS_STORED, apply_fused, per_layer_values
from optimizers._native import native_kernel

__all__ = ["SETAdam"]

_EPS_MODES = ("root", "accumulate")


class SETAdam(MultiPathOptimizer):
    r"""SET-Adam (Zhang, 2023): suppresses the range of Adam's adaptive stepsizes.

    The state follows Adam's recursion; the three operations act, at every step, on a
    copy of the second moment of each layer (one parameter tensor, ``d`` elements)::

        g <- g + weight_decay * theta                 (only if not decoupled_weight_decay)
        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g^2  [+ eps if eps_mode == "accumulate"]
        c = (sum v)^2 / (d * sum v^2)                 cos^2 of the angle (v, 1); c = 1 if v == 0
        v~ = c * v                                    (S) down-scaling
        w = sqrt(v~ / (1 - b2^t) + eps)               (E) eps-embedding  ("root")
        w = sqrt(v~ / (1 - b2^t))                     (E) with eps_mode == "accumulate"
        w~ = w - tau * min(w)                         (T) down-translating
        theta <- theta - lr * weight_decay * theta    (only if decoupled_weight_decay)
        theta <- theta - lr / (1 - b1^t) * m / w~

    ``eps_mode``: ``"root"`` adds ``eps`` once, inside the square root, as the paper
    writes it. ``"accumulate"`` adds it into the state ``v`` at every step (as in the
    author's AdaBelief-style optimizers) and not again in the root; the floor of the
    bias-corrected ``v`` is then ``c * eps / (1 - b2)`` instead of ``eps``.

    Default ``eps = 1e-16``: inside a square root it acts like ``sqrt(eps) = 1e-8``
    added to ``sqrt(v)``, i.e. Adam's usual 1e-8 outside the root. With ``eps > 0`` and
    ``tau < 1``, ``min(w) >= sqrt(eps)`` (root mode) and ``w~ >= (1 - tau) * w > 0``, so
    the denominator never vanishes. With ``tau = 1`` (the argmin entry of each layer
    and every entry of a one-element tensor get ``w~ = 0``), with ``eps = 0`` (entries
    whose ``v`` is 0), or when ``eps`` underflows (fp16), a denominator can be exactly
    0: such entries take **no step** this iteration (``x / 0 := 0``) instead of ``inf``
    or ``nan``. A NaN denominator (from NaN gradients) still propagates.

    The scale ``c`` is reduced in float64, so it neither overflows nor loses precision
    for low-precision parameters. Buffers have the parameter's dtype (bf16 parameters
    keep bf16 state and bf16 elementwise arithmetic). Tensors with no element are
    skipped. State per parameter: ``step`` (float32 CPU tensor), ``exp_avg`` (``m``),
    ``exp_avg_sq`` (``v``).

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: learning rate (default: 1e-3).
        betas: ``(b1, b2)``, each in [0, 1) (default: (0.9, 0.999)).
        eps: term of the eps-embedding, >= 0 (default: 1e-16, see above).
        tau: down-translation factor in [0, 1] (default: 0.5).
        weight_decay: weight-decay coefficient, >= 0 (default: 0).
        eps_mode: ``"root"`` or ``"accumulate"`` (default: ``"root"``).
        decoupled_weight_decay: AdamW-style decay if True, L2 added to the gradient if
            False (default: True).
        foreach: use the multi-tensor (``torch._foreach_*``) implementation; ``None``
            means yes unless ``fused`` (default: None).
        fused: compile each tensor's update with ``torch.compile`` (see
            :mod:`optimizers._fused`): the same two kernels as the reference path.
            The reductions (``sum v``, ``sum v^2``, ``min v``) need the whole updated
            ``v`` before ``theta`` can move, so this path takes two passes: the
            moments with the reductions taken as ``v`` is written; then the
            parameter. Cannot be combined with ``foreach=True`` (default: None,
            i.e. no).
            On the CPU, float32 and float64 tensors run a native kernel of the same
            operations instead (see :mod:`optimizers._native`).

    Sparse gradients are not supported (``RuntimeError``).

    References:
        Zhang. On Suppressing Range of Adaptive Stepsizes of Adam to Improve
        Generalisation Performance. https://arxiv.org/abs/2302.01029
    """

    update_keys = ("lr", "eps", "tau", "weight_decay", "eps_mode", "decoupled_weight_decay")
    late_defaults = MappingProxyType({"eps_mode": "root", "decoupled_weight_decay": True})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-16,
        tau: float = 0.5,
        weight_decay: float = 0.0,
        eps_mode: str = "root",
        decoupled_weight_decay: bool = True,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_impl(foreach, fused)
        _check_nonnegative("learning rate", lr)
        _check_betas(betas)
        _check_nonnegative("epsilon value", eps)
        if not (_is_number(tau) and 0.0 <= tau <= 1.0):
            raise ValueError(f"Invalid tau value: {tau} (must be in [0, 1])")
        _check_nonnegative("weight_decay value", weight_decay)
        _check_flag("decoupled_weight_decay", decoupled_weight_decay)
        if eps_mode not in _EPS_MODES:
            raise ValueError(f"Invalid eps_mode value: {eps_mode!r} (must be one of {_EPS_MODES})")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "tau": tau,
            "weight_decay": weight_decay,
            "eps_mode": eps_mode,
            "decoupled_weight_decay": decoupled_weight_decay,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def _updates(self, param: Tensor) -> bool:
        # An empty tensor has nothing to update and no per-layer min or cosine.
        return param.numel() > 0

    def _paths(self) -> tuple[Impl, Impl, Impl]:
        return _single_tensor_set_adam, _multi_tensor_set_adam, _fused_set_adam


def _cos2(total: Tensor, total_sq: Tensor, numel: Tensor | int) -> Tensor:
    """``(sum v)^2 / (d * sum v^2)`` from the sums of ``v >= 0`` and ``v^2``; 1 when v == 0."""
    return torch.where(total_sq > 0, total * total / (total_sq * numel), 1.0)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den == 0`` (no step rather than inf or nan)."""
    return torch.where(den == 0, 0.0, num / den)


def _set_adam_scalars(
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    tau: float,
    weight_decay: float,
    eps_mode: str,
    decoupled_weight_decay: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scalars of both passes at step count ``step``: (moments, update).

    ``eps_mode`` is structural, and so are the weight-decay terms that do not apply
    (``None``: no term, no read of ``theta`` in the moments pass). Whether a term
    applies depends on the hyperparameters only, never on the step or the current
    learning rate, so a schedule never changes the structure (never recompiles).
    """
    decays = decoupled_weight_decay and weight_decay != 0.0
    adds_l2 = not decoupled_weight_decay and weight_decay != 0.0
    moments = {
        "l2": weight_decay if adds_l2 else None,
        "beta1": beta1,
        "one_minus_beta1": 1.0 - beta1,
        "beta2": beta2,
        "one_minus_beta2": 1.0 - beta2,
        "bias_correction2": 1.0 - beta2**step,
        "eps": eps,
        "tau": tau,
        "eps_mode": eps_mode,
    }
    update = {
        "decay": 1.0 - lr * weight_decay if decays else None,
        "eps": eps,
        "step_size": lr / (1.0 - beta1**step),
        "eps_mode": eps_mode,
    }
    return moments, update


def _embed(v: Tensor, scale: Tensor, eps: Any, eps_mode: str) -> Tensor:
    """``w = sqrt(c * v / (1 - b2^t) [+ eps])``, elementwise (also on ``min(v)``)."""
    w = v * scale
    if eps_mode == "root":
        w = w + eps
    return w.sqrt()


def _set_adam_moments_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    layer: Tensor,
    *,
    l2: Any,
    beta1: Any,
    one_minus_beta1: Any,
    beta2: Any,
    one_minus_beta2: Any,
    bias_correction2: Any,
    eps: Any,
    tau: Any,
    eps_mode: str,
) -> None:
    """First pass of a SET-Adam step for one tensor: the moments, and the layer's two
    coefficients into ``layer``: the scale ``c / (1 - b2^t)`` and the shift
    ``tau * min(w)``.

    ``theta`` is read only for the L2 term. The reductions (``sum v``, ``sum v^2``,
    ``min v``) are taken as ``v`` is written, so the second pass reads ``v`` once;
    the sums are float64, so ``c`` neither overflows nor loses precision for
    low-precision parameters. The coefficients are finished here, once per layer:
    scalar math left to the second pass would be redone for every element there
    (see :mod:`optimizers._fused`). ``w`` is a monotone function of ``v``, so
    ``min(w)`` is ``w(min(v))``, exact because ``min(v)`` is over the stored ``v``.
    Tensor-polymorphic (see :mod:`optimizers._fused`): the scalars, from
    :func:`_set_adam_scalars`, are Python floats on the reference path and 0-d
    tensors on the fused one.
    """
    if l2 is not None:
        grad = grad + param * l2
    exp_avg.mul_(beta1).add_(grad * one_minus_beta1)
    exp_avg_sq.mul_(beta2).add_(grad * grad * one_minus_beta2)
    if eps_mode == "accumulate":
        exp_avg_sq.add_(eps)
    v = exp_avg_sq.to(torch.float64)
    cos2 = _cos2(v.sum(), (v * v).sum(), exp_avg_sq.numel())
    scale = (cos2 / bias_correction2).to(exp_avg_sq.dtype)
    shift = _embed(exp_avg_sq.min(), scale, eps, eps_mode) * tau
    layer.copy_(torch.stack([scale, shift]))


def _set_adam_update_kernel(
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    layer: Tensor,
    *,
    decay: Any,
    eps: Any,
    step_size: Any,
    eps_mode: str,
) -> None:
    """Second pass: ``theta`` from the moments and the layer's (scale, shift)."""
    scale = layer[0].to(exp_avg_sq.dtype)
    w = _embed(exp_avg_sq, scale, eps, eps_mode) - layer[1].to(exp_avg_sq.dtype)
    if decay is not None:
        param.mul_(decay)
    param.sub_(_safe_div(exp_avg, w) * step_size)


def _single_tensor_set_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    **hparams: Any,
) -> None:
    """Reference path: the two kernels run eagerly on each tensor in turn."""
    for i, param in enumerate(params):
        moments, update = _set_adam_scalars(steps[i], **hparams)
        layer = per_layer_values(param, 2)
        _set_adam_moments_kernel(param, grads[i], exp_avgs[i], exp_avg_sqs[i], layer, **moments)
        _set_adam_update_kernel(param, exp_avgs[i], exp_avg_sqs[i], layer, **update)


# The native CPU kernel (csrc/set_adam.cpp) reads these coefficients, from
# _native_scalars, in this order.
_NATIVE = native_kernel(
    "set_adam",
    width=4,
    scalars=(
        "l2",
        "beta1",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "bias_correction2",
        "eps",
        "tau",
        "accumulate",
        "decay",
        "step_size",
    ),
)


def _native_scalars(step: int, **hparams: Any) -> dict[str, Any]:
    """Both passes' coefficients, ``eps_mode`` as the flag ``accumulate``."""
    moments, update = _set_adam_scalars(step, **hparams)
    return {**moments, **update, "accumulate": hparams["eps_mode"] == "accumulate"}


def _fused_set_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    **hparams: Any,
) -> None:
    """Fused path: float32/float64 CPU tensors through the native kernel (both passes
    in one loop nest, see :mod:`optimizers._native`), the others through the two
    kernels compiled, one after the other over all tensors.

    Both passes must end before ``theta`` moves (``c`` and ``min(w)`` need the whole
    updated ``v``), so a step moves 9 tensors' worth of bytes, not the 7 of one pass
    (the native kernel reads the second pass's 3 from cache where they fit).
    """
    tensors = [params, grads, exp_avgs, exp_avg_sqs]
    (p, g, m, v), left_steps = _NATIVE.run_buckets(
        tensors, steps, lambda step: _native_scalars(step, **hparams)
    )
    if not left_steps:
        return
    layers = [per_layer_values(param, 2) for param in p]  # (scale, shift)
    apply_fused(
        _set_adam_moments_kernel,
        [p, g, m, v, layers],
        left_steps,
        lambda step: _set_adam_scalars(step, **hparams)[0],
        per_row=1,
        options=REDUCE_AS_STORED,
    )
    apply_fused(
        _set_adam_update_kernel,
        [p, m, v, layers],
        left_steps,
        lambda step: _set_adam_scalars(step, **hparams)[1],
        per_row=1,
    )


def _multi_tensor_set_adam(
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
    tau: float,
    weight_decay: float,
    eps_mode: str,
    decoupled_weight_decay: bool,
) -> None:
    """The math of the two ``_set_adam_*_kernel`` with ``torch._foreach_*`` ops.

    Tensors are bucketed by device, dtype and step count. The per-layer scalars
    (``c``, ``min(w)``) stay 0-dim tensors, so nothing syncs with the device; only
    the final zero-denominator guard runs tensor by tensor.
    """
    for (_, dtype, step), idx in _buckets(params, steps).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m = [exp_avgs[i] for i in idx]
        v = [exp_avg_sqs[i] for i in idx]
        if weight_decay != 0.0:
            if decoupled_weight_decay:
                torch._foreach_mul_(p, 1.0 - lr * weight_decay)
            else:
                g = list(torch._foreach_add(g, p, alpha=weight_decay))
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, g, alpha=1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1.0 - beta2)
        if eps_mode == "accumulate":
            torch._foreach_add_(v, eps)
        n1 = torch.stack(torch._foreach_norm(v, 1, dtype=torch.float64))
        n2 = torch.stack(torch._foreach_norm(v, 2, dtype=torch.float64))
        numel = torch.tensor([t.numel() for t in v], dtype=torch.float64, device=n1.device)
        scales = (_cos2(n1, n2 * n2, numel) / (1.0 - beta2**step)).to(dtype).unbind()
        w = torch._foreach_mul(v, list(scales))
        if eps_mode == "root":
            torch._foreach_add_(w, eps)
        torch._foreach_sqrt_(w)
        # w - tau * min(w) == w + tau * max(-w); negation is exact, so this matches
        # the reference path bit for bit.
        torch._foreach_neg_(w)
        neg_min = torch._foreach_max(w)
        torch._foreach_neg_(w)
        torch._foreach_add_(w, list(neg_min), alpha=tau)
        directions = [_safe_div(num, den) for num, den in zip(m, w, strict=True)]
        torch._foreach_add_(p, directions, alpha=-lr / (1.0 - beta1**step))
