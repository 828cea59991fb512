"""LAMB: layer-wise adaptive moments with a trust ratio (You et al., 2019)."""

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
from optimizers._fused import REDUCE_AS_STORED, apply_fused, per_layer_values
from optimizers._native import native_kernel

__all__ = ["LAMB"]


class LAMB(MultiPathOptimizer):
    r"""LAMB (You et al., 2019), Algorithm 2 of the paper.

    With ``t`` the step count of a parameter (starting at 1), ``g`` its gradient and
    ``lambda`` the weight decay, per parameter tensor::

        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g^2
        m_hat = m / (1 - b1^t);  v_hat = v / (1 - b2^t)
        r = m_hat / (sqrt(v_hat) + eps) + lambda * theta
        w = min(||theta||, max_weight_norm)                 (||theta|| if no clamp)
        ratio = w / ||r||   if w > 0 and ||r|| > 0,   else 1
        theta <- theta - lr * ratio * r

    Norms are Euclidean norms over the whole tensor (the paper's "layer"). With
    ``exclude_1d``, tensors with at most one dimension (biases, normalization gains)
    get neither the weight decay nor the trust ratio: ``theta <- theta - lr * m_hat /
    (sqrt(v_hat) + eps)``, the usual practice for BERT pre-training.

    State per parameter: ``step`` (float32 CPU tensor, as in ``torch.optim``),
    ``exp_avg`` (``m``) and ``exp_avg_sq`` (``v``). Buffers have the parameter's dtype.
    The norms are accumulated in float64 on the reference and fused paths, and in the
    parameter's dtype (at least float32) on the foreach path.

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: learning rate, >= 0 (default: 1e-3).
        betas: ``(b1, b2)``, coefficients of the running averages of the gradient and
            of its square, each in [0, 1) (default: (0.9, 0.999)).
        eps: term added to ``sqrt(v_hat)``, >= 0 (default: 1e-6).
        weight_decay: decoupled weight-decay coefficient, added to the update before
            the trust ratio, >= 0 (default: 0.01).
        max_weight_norm: upper clamp of ``||theta||`` in the trust ratio (the paper's
            scaling function phi), > 0, or ``None`` for no clamp (default: None).
        exclude_1d: no weight decay nor trust ratio on tensors with ``ndim <= 1``
            (default: False).
        foreach: use the multi-tensor (``torch._foreach_*``) implementation; ``None``
            means yes unless ``fused`` (default: None).
        fused: compile each tensor's update with ``torch.compile`` (see
            :mod:`optimizers._fused`): the same two kernels as the reference path.
            The trust ratio needs ``||r||`` before ``theta`` can move, so this path
            takes two passes per tensor: the moments with both norms reduced as they
            are written, then the parameter, with ``r`` recomputed from ``theta``,
            ``m`` and ``v``. Cannot be combined with ``foreach=True`` (default: None,
            i.e. no).
            On the CPU, float32 and float64 tensors run a native kernel of the same
            operations instead (see :mod:`optimizers._native`).

    Sparse gradients and complex parameters are not supported (``RuntimeError``).

    References:
        You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer, Hsieh.
        Large Batch Optimization for Deep Learning: Training BERT in 76 minutes.
        ICLR 2020. https://arxiv.org/abs/1904.00962
    """

    update_keys = ("lr", "eps", "weight_decay", "max_weight_norm", "exclude_1d")
    late_defaults = MappingProxyType({"max_weight_norm": None, "exclude_1d": False})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        max_weight_norm: float | None = None,
        exclude_1d: bool = False,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_impl(foreach, fused)
        _check_nonnegative("learning rate", lr)
        _check_betas(betas)
        _check_nonnegative("epsilon value", eps)
        _check_nonnegative("weight_decay value", weight_decay)
        if max_weight_norm is not None and not (
            isinstance(max_weight_norm, int | float)
            and math.isfinite(max_weight_norm)
            and max_weight_norm > 0.0
        ):
            raise ValueError(f"Invalid max_weight_norm value: {max_weight_norm}")
        _check_flag("exclude_1d", exclude_1d)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "max_weight_norm": max_weight_norm,
            "exclude_1d": exclude_1d,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def _paths(self) -> tuple[Impl, Impl, Impl]:
        return _single_tensor_lamb, _multi_tensor_lamb, _fused_lamb


def _norm_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate norms in at least float32: a bf16 sum of squares loses the ratio."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _trust_ratio(weight_norm: Tensor, update_norm: Tensor, max_weight_norm: float | None) -> Tensor:
    """``min(||theta||, max) / ||r||``, or 1 where either norm is 0 (elementwise)."""
    if max_weight_norm is not None:
        weight_norm = weight_norm.clamp(max=max_weight_norm)
    usable = (weight_norm > 0) & (update_norm > 0)
    return torch.where(usable, weight_norm / update_norm, torch.ones_like(weight_norm))


def _lamb_scalars(
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    max_weight_norm: float | None,
    trust_ratio: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scalars of both passes at step count ``step``: (moments, update).

    ``trust_ratio`` (structural) is how the caller applies ``exclude_1d``: without it
    (and with ``weight_decay=0``) the step is plain bias-corrected Adam.
    ``max_weight_norm`` is structural when ``None``. The bias corrections are passed
    as the factors ``1 / (1 - b1^t)`` and ``1 / sqrt(1 - b2^t)``: a multiply per
    element where a division by a scalar would cost a division.
    """
    update = {
        "inv_bias_correction1": 1.0 / (1.0 - beta1**step),
        "inv_sqrt_bias_correction2": 1.0 / math.sqrt(1.0 - beta2**step),
        "eps": eps,
        "weight_decay": weight_decay if trust_ratio else 0.0,
    }
    moments = {
        **update,
        "lr": lr,
        "beta1": beta1,
        "one_minus_beta1": 1.0 - beta1,
        "beta2": beta2,
        "one_minus_beta2": 1.0 - beta2,
        "max_weight_norm": max_weight_norm,
        "trust_ratio": trust_ratio,
    }
    return moments, update


def _lamb_direction(
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    *,
    inv_bias_correction1: Any,
    inv_sqrt_bias_correction2: Any,
    eps: Any,
    weight_decay: Any,
) -> Tensor:
    """``r = m_hat / (sqrt(v_hat) + eps) + weight_decay * theta``, elementwise."""
    denom = exp_avg_sq.sqrt() * inv_sqrt_bias_correction2 + eps
    direction: Tensor = exp_avg * inv_bias_correction1 / denom + param * weight_decay
    return direction


def _sum_of_squares(x: Tensor) -> Tensor:
    """``sum x^2`` in float64: no overflow nor lost ratio for any parameter dtype."""
    x = x.to(torch.float64)
    return (x * x).sum()


def _lamb_moments_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    layer: Tensor,
    *,
    lr: Any,
    beta1: Any,
    one_minus_beta1: Any,
    beta2: Any,
    one_minus_beta2: Any,
    max_weight_norm: Any,
    trust_ratio: bool,
    **direction: Any,
) -> None:
    """First pass of a LAMB step for one tensor: the moments, and the layer's step
    size ``lr * ratio`` into ``layer`` (one element).

    The norms of ``theta`` and ``r`` are reduced (float64) as the moments are written;
    ``r`` itself is not stored: the second pass recomputes it from the same ``theta``,
    ``m`` and ``v``, which reads three tensors where a stored ``r`` would cost a write
    and a read. Tensor-polymorphic (see :mod:`optimizers._fused`): the scalars, from
    :func:`_lamb_scalars`, are Python floats on the reference path and 0-d tensors
    on the fused one.
    """
    exp_avg.mul_(beta1).add_(grad * one_minus_beta1)
    exp_avg_sq.mul_(beta2).add_(grad * grad * one_minus_beta2)
    if trust_ratio:
        update = _lamb_direction(param, exp_avg, exp_avg_sq, **direction)
        weight_norm = _sum_of_squares(param).sqrt()
        update_norm = _sum_of_squares(update).sqrt()
        layer.copy_((_trust_ratio(weight_norm, update_norm, max_weight_norm) * lr).reshape(1))
    else:
        layer.fill_(lr)


def _lamb_update_kernel(
    param: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, layer: Tensor, **direction: Any
) -> None:
    """Second pass: ``theta <- theta - (lr * ratio) * r``, ``r`` recomputed."""
    param.sub_(_lamb_direction(param, exp_avg, exp_avg_sq, **direction) * layer[0])


def _single_tensor_lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    exclude_1d: bool,
    **hparams: Any,
) -> None:
    """Reference path: the two kernels run eagerly on each tensor in turn."""
    for i, param in enumerate(params):
        adapt = not (exclude_1d and param.ndim <= 1)
        moments, update = _lamb_scalars(steps[i], trust_ratio=adapt, **hparams)
        layer = per_layer_values(param, 1)
        _lamb_moments_kernel(param, grads[i], exp_avgs[i], exp_avg_sqs[i], layer, **moments)
        _lamb_update_kernel(param, exp_avgs[i], exp_avg_sqs[i], layer, **update)


# The native CPU kernel (csrc/lamb.cpp) reads these of _lamb_scalars' coefficients.
_NATIVE = native_kernel(
    "lamb",
    width=4,
    scalars=(
        "lr",
        "beta1",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "inv_bias_correction1",
        "inv_sqrt_bias_correction2",
        "eps",
        "weight_decay",
        "max_weight_norm",
        "trust_ratio",
    ),
)


def _fused_lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    exclude_1d: bool,
    **hparams: Any,
) -> None:
    """Fused path: float32/float64 CPU tensors through the native kernel (both passes
    in one loop nest, see :mod:`optimizers._native`), the others through the two
    kernels compiled, one after the other over all tensors.

    The fused path flattens tensors, so ``exclude_1d`` is applied here, by running
    the adapted and the excluded tensors as two calls (two compiled variants).
    """
    for adapt in (True, False):
        idx = [i for i, p in enumerate(params) if (not (exclude_1d and p.ndim <= 1)) == adapt]

        def scalars(step: int, adapt: bool = adapt) -> tuple[dict[str, Any], dict[str, Any]]:
            return _lamb_scalars(step, trust_ratio=adapt, **hparams)

        if not idx:
            continue
        tensors = [[lst[i] for i in idx] for lst in (params, grads, exp_avgs, exp_avg_sqs)]
        # The moments' keys include the update's.
        (p, g, m, v), bucket_steps = _NATIVE.run_buckets(
            tensors, [steps[i] for i in idx], lambda step: scalars(step)[0]
        )
        if not bucket_steps:
            continue
        layers = [per_layer_values(param, 1) for param in p]  # lr * ratio
        apply_fused(
            _lamb_moments_kernel,
            [p, g, m, v, layers],
            bucket_steps,
            lambda step: scalars(step)[0],
            per_row=1,
            options=REDUCE_AS_STORED,
        )
        apply_fused(
            _lamb_update_kernel,
            [p, m, v, layers],
            bucket_steps,
            lambda step: scalars(step)[1],
            per_row=1,
        )


def _multi_tensor_lamb(
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
    max_weight_norm: float | None,
    exclude_1d: bool,
) -> None:
    """The math of the two ``_lamb_*_kernel`` with ``torch._foreach_*`` ops.

    Tensors are bucketed by device, dtype and step count (so the bias corrections are
    single Python floats); the trust ratios of a bucket are computed from one
    ``_foreach_norm`` per side, with no host synchronisation.
    """
    for (_, dtype, step), idx in _buckets(params, steps).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m = [exp_avgs[i] for i in idx]
        v = [exp_avg_sqs[i] for i in idx]
        torch._foreach_lerp_(m, g, 1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1.0 - beta2)
        denom = torch._foreach_div(v, 1.0 - beta2**step)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)
        updates = list(torch._foreach_div(m, 1.0 - beta1**step))
        torch._foreach_div_(updates, denom)
        del denom
        adapt = [j for j, param in enumerate(p) if not (exclude_1d and param.ndim <= 1)]
        if adapt:
            p_adapt = [p[j] for j in adapt]
            u_adapt = [updates[j] for j in adapt]
            if weight_decay != 0.0:
                torch._foreach_add_(u_adapt, p_adapt, alpha=weight_decay)
            norm_dtype = _norm_dtype(dtype)
            weight_norms = torch.stack(torch._foreach_norm(p_adapt, 2, dtype=norm_dtype))
            update_norms = torch.stack(torch._foreach_norm(u_adapt, 2, dtype=norm_dtype))
            ratios = _trust_ratio(weight_norms, update_norms, max_weight_norm)
            torch._foreach_mul_(u_adapt, list(ratios.unbind()))
        torch._foreach_add_(p, updates, alpha=-lr)
