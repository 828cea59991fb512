"""SWATS: Adam that switches to SGD with momentum once its LR estimate settles."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optimizers._common import (
    _advance,
    _backfill,
    _buckets,
    _check_betas,
    _check_impl,
    _check_nonnegative,
    _check_param,
    _choose_impl,
    _closure_loss,
)
from optimizers._fused import apply_fused, scalar_dtype
from optimizers._native import native_kernel

__all__ = ["SWATS"]

_SWITCH_TESTS = ("absolute", "relative")
_GAMMA_SCOPES = ("layer", "global")
# The per-scope record: shared by every tensor of a group when gamma_scope="global".
_RECORD_KEYS = ("lambda", "switch_step", "sgd_lr", "switch_lr", "group_step")


class SWATS(Optimizer):
    r"""SWATS (Keskar and Socher, 2017), Algorithm 1 of the paper.

    With ``k`` the step count (starting at 1), ``g`` the gradient (plus
    ``weight_decay * theta``, L2-style) and ``lr`` the Adam learning rate::

        Adam phase:
            m <- b1 * m + (1 - b1) * g
            a <- b2 * a + (1 - b2) * g^2
            p = -lr * sqrt(1 - b2^k) / (1 - b1^k) * m / (sqrt(a) + eps)
            theta <- theta + p
            if p.g != 0:
                gamma = p.p / (-p.g)              projection of SGD onto the Adam step
                L <- b2 * L + (1 - b2) * gamma
                if k > 1 and |L / (1 - b2^k) - gamma| < switch_eps:
                    switch to SGD; v <- 0; Lambda = L / (1 - b2^k)
        SGD phase:
            v <- b1 * v + g
            theta <- theta - (1 - b1) * Lambda * v

    ``switch_test="relative"`` replaces the test by ``|L_hat - gamma| < switch_eps *
    |gamma|``, which does not depend on the scale of the learning rate.
    ``gamma_scope="layer"`` keeps ``gamma``, ``L`` and the switch per parameter tensor;
    ``"global"`` takes the dot products over all tensors of a param group, which then
    switches once, as a whole.

    Three safeguards go beyond the paper: a switch needs ``Lambda > 0`` (a negative
    estimate, possible when Adam steps uphill, would make SGD ascend); after the
    switch the SGD step follows the group's learning rate proportionally,
    ``(1 - b1) * Lambda * lr / lr_switch`` with ``lr_switch`` the rate at the switch,
    so a learning-rate schedule keeps acting (with a constant rate this is the
    paper); and with ``eps = 0`` an entry whose ``sqrt(a)`` is 0 takes no Adam step
    (``x / 0 := 0``) instead of ``nan``.

    State per parameter: ``step`` (float32 CPU tensor), ``exp_avg`` and ``exp_avg_sq``
    (freed at the switch), ``momentum_buffer`` (from the switch on), and the record of
    the tensor's scope: ``lambda`` (``L``), ``switch_step`` (``k`` of the switch, or
    ``None``), ``sgd_lr`` (``(1 - b1) * Lambda``, the learning rate of the equivalent
    ``torch.optim.SGD(momentum=b1)``), ``switch_lr`` and, with the global scope,
    ``group_step``. With the global scope every tensor of the group holds the same
    record. The state is the same on every path, so a run may change path on resume.
    The dot products are accumulated in float64 on every path (on the fused path in
    the same loop that writes the step: float32 sums compile to a slower, cascaded
    summation), so the switch does not depend on the parameters' precision.

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: Adam learning rate, >= 0 (default: 1e-3).
        betas: ``(b1, b2)``, each in [0, 1) (default: (0.9, 0.999)). ``b1`` is also
            the SGD momentum and ``b2`` the averaging coefficient of ``L``.
        eps: term added to ``sqrt(a)``, >= 0 (default: 1e-8).
        weight_decay: L2 coefficient added to the gradient in both phases, >= 0
            (default: 0).
        switch_eps: tolerance of the switch test, > 0 (default: 1e-9).
        switch_test: ``"absolute"`` (the paper) or ``"relative"`` (default:
            "absolute").
        gamma_scope: ``"layer"`` (per tensor) or ``"global"`` (per param group)
            (default: "layer").
        foreach: use the multi-tensor (``torch._foreach_*``) implementation; ``None``
            means yes unless ``fused`` (default: None).
        fused: compile each tensor's update with ``torch.compile`` (see
            :mod:`optimizers._fused`): in the Adam phase one pass per tensor computes
            the step and both dot products ``p.p`` and ``p.g`` of the projection; in
            the SGD phase one pass updates the momentum and the parameter. The switch
            test itself runs on the host, once per step, on every path. Cannot be
            combined with ``foreach=True`` (default: None, i.e. no).
            On the CPU, float32 and float64 tensors run a native kernel of the same
            operations instead (see :mod:`optimizers._native`).

    Sparse gradients and complex parameters are not supported (``RuntimeError``).

    References:
        Keskar, Socher. Improving Generalization Performance by Switching from Adam to
        SGD. 2017. https://arxiv.org/abs/1712.07628
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        switch_eps: float = 1e-9,
        switch_test: str = "absolute",
        gamma_scope: str = "layer",
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_impl(foreach, fused)
        _check_nonnegative("learning rate", lr)
        _check_betas(betas)
        _check_nonnegative("epsilon value", eps)
        _check_nonnegative("weight_decay value", weight_decay)
        if not (
            isinstance(switch_eps, int | float) and math.isfinite(switch_eps) and switch_eps > 0
        ):
            raise ValueError(f"Invalid switch_eps value: {switch_eps}")
        if switch_test not in _SWITCH_TESTS:
            raise ValueError(f"Invalid switch_test value: {switch_test!r} (one of {_SWITCH_TESTS})")
        if gamma_scope not in _GAMMA_SCOPES:
            raise ValueError(f"Invalid gamma_scope value: {gamma_scope!r} (one of {_GAMMA_SCOPES})")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "switch_eps": switch_eps,
            "switch_test": switch_test,
            "gamma_scope": gamma_scope,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        _backfill(self.param_groups, {"switch_test": "absolute", "gamma_scope": "layer"})

    def _init_group(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]
    ) -> list[dict[str, Any]]:
        """Collect the tensors with a gradient; create their state; return their states."""
        states = []
        for p in group["params"]:
            if p.grad is None:
                continue
            _check_param("SWATS", p, p.grad)
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                for key, value in _new_record().items():
                    state.setdefault(key, value)
            if state["switch_step"] is None and "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            states.append(state)
        return states

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step; ``closure`` re-evaluates the loss."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            scope_global = group["gamma_scope"] == "global"
            if scope_global:
                self._share_record(group, self._group_record(group))
            params: list[Tensor] = []
            grads: list[Tensor] = []
            states = self._init_group(group, params, grads)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            hp = _Hyper(
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                switch_eps=group["switch_eps"],
                switch_test=group["switch_test"],
            )
            impl = _choose_impl(group, _REFERENCE, _FOREACH, _FUSED)
            if scope_global:
                self._share_record(group, _global_scope_step(impl, params, grads, states, hp))
            else:
                _layer_scope_step(impl, params, grads, states, hp)
        return loss

    def _group_record(self, group: dict[str, Any]) -> dict[str, Any]:
        """The global-scope record, as held by any tensor of the group (all hold it)."""
        for p in group["params"]:
            state = self.state.get(p)
            if state and "group_step" in state:
                return {key: state[key] for key in _RECORD_KEYS}
        return _new_record(global_scope=True)

    def _share_record(self, group: dict[str, Any], record: dict[str, Any]) -> None:
        for p in group["params"]:
            state = self.state[p]
            state.update(record)
            if record["switch_step"] is not None:
                state.pop("exp_avg", None)
                state.pop("exp_avg_sq", None)


def _new_record(global_scope: bool = False) -> dict[str, Any]:
    record: dict[str, Any] = {"lambda": 0.0, "switch_step": None, "sgd_lr": None, "switch_lr": None}
    if global_scope:
        record["group_step"] = 0
    return record


@dataclass(frozen=True)
class _Hyper:
    """A param group's hyperparameters for one step."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    switch_eps: float
    switch_test: str

    @property
    def l2(self) -> float | None:
        """The L2 coefficient, ``None`` (structural: no term at all) when it is 0."""
        return self.weight_decay if self.weight_decay != 0.0 else None


# -- the per-tensor kernels: the math of both phases, shared by every path --------------
def _adam_scalars(step: int, hp: _Hyper) -> dict[str, Any]:
    """Every scalar of an Adam-phase step at step count ``step``."""
    bias_correction1 = 1.0 - hp.beta1**step
    bias_correction2 = 1.0 - hp.beta2**step
    return {
        "l2": hp.l2,
        "beta1": hp.beta1,
        "one_minus_beta1": 1.0 - hp.beta1,
        "beta2": hp.beta2,
        "one_minus_beta2": 1.0 - hp.beta2,
        "eps": hp.eps,
        "neg_step_size": -hp.lr * math.sqrt(bias_correction2) / bias_correction1,
    }


def _accumulate_dots(p_k: Tensor, grad: Tensor, dots: Tensor) -> None:
    """``dots += (p.p, p.g)``, accumulated in float64 (``dots``' dtype)."""
    p = p_k.to(dots.dtype)
    g = grad.to(dots.dtype)
    dots.add_(torch.stack([(p * p).sum(), (p * g).sum()]))


def _adam_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    dots: Tensor,
    *,
    l2: Any,
    beta1: Any,
    one_minus_beta1: Any,
    beta2: Any,
    one_minus_beta2: Any,
    eps: Any,
    neg_step_size: Any,
) -> None:
    """Algorithm 1, lines 10-13, for one tensor, plus the dot products of lines 14-15.

    Applies the Adam step ``p`` to ``param`` and adds ``(p.p, p.g)`` to ``dots``.
    Tensor-polymorphic (see :mod:`optimizers._fused`): the scalars, from
    :func:`_adam_scalars`, are Python floats on the reference path and 0-d tensors on
    the fused one, where the step and both reductions share one pass over the tensor.
    """
    if l2 is not None:
        grad = grad + param * l2
    exp_avg.mul_(beta1).add_(grad * one_minus_beta1)
    exp_avg_sq.mul_(beta2).add_(grad * grad * one_minus_beta2)
    denom = exp_avg_sq.sqrt() + eps
    p_k = _safe_div(exp_avg, denom) * neg_step_size
    param.add_(p_k)
    _accumulate_dots(p_k, grad, dots)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den == 0`` (only possible with ``eps = 0``)."""
    return torch.where(den == 0, 0.0, num / den)


def _sgd_kernel(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor,
    *,
    l2: Any,
    beta1: Any,
    neg_lr: Any,
) -> None:
    """Algorithm 1, lines 6-7, for one tensor; ``-neg_lr`` is ``(1 - b1) * Lambda``."""
    if l2 is not None:
        grad = grad + param * l2
    momentum_buffer.mul_(beta1).add_(grad)
    param.add_(momentum_buffer * neg_lr)


# -- the three paths: each runs the two phases on lists of tensors -----------------------
_Tensors = list[Tensor]
_AdamPhase = Callable[[_Tensors, _Tensors, _Tensors, _Tensors, list[int], _Hyper], Tensor]
_SgdPhase = Callable[[_Tensors, _Tensors, _Tensors, list[float], _Hyper], None]


@dataclass(frozen=True)
class _Path:
    """One implementation of both phases.

    ``adam(params, grads, exp_avgs, exp_avg_sqs, steps, hp)`` updates the tensors and
    returns their dot products ``(p.p, p.g)``, one row per tensor (float64 on CPU);
    ``sgd(params, grads, momentum_buffers, sgd_lrs, hp)`` takes each tensor's rate.
    """

    adam: _AdamPhase
    sgd: _SgdPhase


def _new_dots(params: list[Tensor]) -> list[Tensor]:
    return [torch.zeros(2, dtype=torch.float64, device=p.device) for p in params]


def _dots_to_host(dots: list[Tensor]) -> Tensor:
    """One host copy for all tensors' dot products (one device sync per step)."""
    device = dots[0].device
    return torch.stack([d.to(device, torch.float64) for d in dots]).cpu()


def _single_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    hp: _Hyper,
) -> Tensor:
    """Reference path: ``_adam_kernel`` run eagerly on each tensor in turn."""
    dots = _new_dots(params)
    for i, param in enumerate(params):
        scalars = _adam_scalars(steps[i], hp)
        _adam_kernel(param, grads[i], exp_avgs[i], exp_avg_sqs[i], dots[i], **scalars)
    return _dots_to_host(dots)


def _single_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    sgd_lrs: list[float],
    hp: _Hyper,
) -> None:
    """Reference path: ``_sgd_kernel`` run eagerly on each tensor in turn."""
    for param, grad, buf, sgd_lr in zip(params, grads, bufs, sgd_lrs, strict=True):
        _sgd_kernel(param, grad, buf, l2=hp.l2, beta1=hp.beta1, neg_lr=-sgd_lr)


def _scalar(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``value`` for an in-place ``_foreach_`` op, as a 0-d tensor.

    An in-place ``_foreach_`` op rounds a Python scalar to the tensors' dtype first
    (``0.9`` becomes ``0.8984375`` in bf16), while the reference's ``mul_`` computes in
    float32; a float32 (float64 for float64 tensors) 0-d tensor computes as it does.
    """
    return torch.full((), value, dtype=scalar_dtype(dtype), device=device)


def _multi_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    hp: _Hyper,
) -> Tensor:
    """The math of ``_adam_kernel`` with ``torch._foreach_*`` ops, op for op (bitwise).

    Bucketed by device, dtype and step count; the dot products are reduced tensor by
    tensor, as on the reference path.
    """
    dots = _new_dots(params)
    for (device, dtype, step), idx in _buckets(params, steps).items():
        sc = _adam_scalars(step, hp)
        beta1, beta2, eps, neg_step_size = (
            _scalar(sc[key], dtype, device) for key in ("beta1", "beta2", "eps", "neg_step_size")
        )
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        m = [exp_avgs[i] for i in idx]
        v = [exp_avg_sqs[i] for i in idx]
        if hp.l2 is not None:
            g = list(torch._foreach_add(g, torch._foreach_mul(p, hp.l2)))
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, torch._foreach_mul(g, sc["one_minus_beta1"]))
        torch._foreach_mul_(v, beta2)
        torch._foreach_add_(v, torch._foreach_mul(torch._foreach_mul(g, g), sc["one_minus_beta2"]))
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, eps)
        if hp.eps == 0.0:  # with eps > 0 no denominator is 0: the guard is the division
            p_k = [_safe_div(num, den) for num, den in zip(m, denom, strict=True)]
        else:
            p_k = list(torch._foreach_div(m, denom))
        del denom
        torch._foreach_mul_(p_k, neg_step_size)
        torch._foreach_add_(p, p_k)
        for i, step_i, grad_i in zip(idx, p_k, g, strict=True):
            _accumulate_dots(step_i, grad_i, dots[i])
    return _dots_to_host(dots)


def _multi_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    sgd_lrs: list[float],
    hp: _Hyper,
) -> None:
    """The math of ``_sgd_kernel`` with ``torch._foreach_*`` ops (per-tensor rates)."""
    for (device, dtype, _), idx in _buckets(params, [0] * len(params)).items():
        p = [params[i] for i in idx]
        g = [grads[i] for i in idx]
        b = [bufs[i] for i in idx]
        if hp.l2 is not None:
            g = list(torch._foreach_add(g, torch._foreach_mul(p, hp.l2)))
        torch._foreach_mul_(b, _scalar(hp.beta1, dtype, device))
        torch._foreach_add_(b, g)
        torch._foreach_add_(p, torch._foreach_mul(b, [-sgd_lrs[i] for i in idx]))


# The native CPU kernel of the Adam phase (csrc/swats.cpp) reads these of
# _adam_scalars' coefficients.
_NATIVE_ADAM = native_kernel(
    "swats",
    width=5,
    per_row=(2,),  # dots
    scalars=(
        "l2",
        "beta1",
        "one_minus_beta1",
        "beta2",
        "one_minus_beta2",
        "eps",
        "neg_step_size",
    ),
)


def _fused_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    hp: _Hyper,
) -> Tensor:
    """Fused path: ``_adam_kernel`` compiled, the dot products in the same pass, or on
    the CPU the native kernel (:mod:`optimizers._native`).

    Each tensor's ``dots`` accumulator rides in its row, whole (``per_row``, see
    :mod:`optimizers._fused`), so a compiled call updates several tensors.
    """

    def scalars(step: int) -> dict[str, Any]:
        return _adam_scalars(step, hp)

    dots = _new_dots(params)
    tensors = [params, grads, exp_avgs, exp_avg_sqs, dots]
    rest, rest_steps = _NATIVE_ADAM.run_buckets(tensors, steps, scalars)
    apply_fused(_adam_kernel, rest, rest_steps, scalars, per_row=1)
    return _dots_to_host(dots)


# The native CPU kernel of the SGD phase (csrc/swats.cpp) reads these coefficients.
# The native CPU kernel of the SGD phase (csrc/swats.cpp): each row carries its rate.
_NATIVE_SGD = native_kernel(
    "swats_sgd", width=4, scalars=("l2", "beta1"), source="swats", per_row=(1,)
)


def _fused_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    sgd_lrs: list[float],
    hp: _Hyper,
) -> None:
    """Fused path: on the CPU the native kernel, every tensor in one call (each row
    carries its rate ``-neg_lr`` as a float64 value: with the layer scope every layer
    has its own); elsewhere ``_sgd_kernel`` compiled, one call per distinct rate."""
    neg_lrs = [torch.full((1,), -rate, dtype=torch.float64) for rate in sgd_lrs]
    (p, g, b, left_rates), _ = _NATIVE_SGD.run_buckets(
        [params, grads, bufs, neg_lrs],
        [0] * len(params),
        lambda _step: {"l2": hp.l2, "beta1": hp.beta1},
    )
    by_rate: dict[float, list[int]] = {}
    for i, neg_lr in enumerate(left_rates):
        by_rate.setdefault(-float(neg_lr), []).append(i)
    for rate, idx in by_rate.items():

        def scalars(_step: int, rate: float = rate) -> dict[str, Any]:
            return {"l2": hp.l2, "beta1": hp.beta1, "neg_lr": -rate}

        apply_fused(
            _sgd_kernel, [[lst[i] for i in idx] for lst in (p, g, b)], [0] * len(idx), scalars
        )


_REFERENCE = _Path(_single_tensor_adam, _single_tensor_sgd)
_FOREACH = _Path(_multi_tensor_adam, _multi_tensor_sgd)
_FUSED = _Path(_fused_adam, _fused_sgd)


# -- Algorithm 1's bookkeeping: the projection, the switch, the two scopes ---------------
def _projection(
    pp: float,
    pg: float,
    lam: float,
    k: int,
    *,
    beta2: float,
    switch_eps: float,
    switch_test: str,
) -> tuple[float, float | None]:
    """Algorithm 1, lines 14-21: the new ``L``, and ``Lambda`` when the switch test passes."""
    if pg == 0.0:
        return lam, None
    gamma = pp / -pg
    lam = beta2 * lam + (1.0 - beta2) * gamma
    lam_hat = lam / (1.0 - beta2**k)
    tolerance = switch_eps if switch_test == "absolute" else switch_eps * abs(gamma)
    if k > 1 and abs(lam_hat - gamma) < tolerance and lam_hat > 0.0:
        return lam, lam_hat
    return lam, None


def _sgd_lr(record: dict[str, Any], lr: float) -> float:
    """The frozen SGD rate, scaled by how far the group's rate moved since the switch."""
    sgd_lr: float = record["sgd_lr"]
    switch_lr: float = record["switch_lr"]
    return sgd_lr * lr / switch_lr


def _switch(record: dict[str, Any], k: int, lam_hat: float, lr: float, beta1: float) -> None:
    record["switch_step"] = k
    record["sgd_lr"] = (1.0 - beta1) * lam_hat
    record["switch_lr"] = lr


def _sgd_phase(
    path: _Path,
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    sgd_lrs: list[float],
    hp: _Hyper,
) -> None:
    """Run the SGD phase; the momentum buffer starts at 0 on a tensor's first SGD step."""
    bufs = []
    for param, state in zip(params, states, strict=True):
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        bufs.append(state["momentum_buffer"])
    path.sgd(params, grads, bufs, sgd_lrs, hp)


def _adam_phase(
    path: _Path,
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    steps: list[int],
    hp: _Hyper,
) -> list[tuple[float, float]]:
    """Run the Adam phase; return each tensor's ``(p.p, p.g)`` as Python floats."""
    exp_avgs = [state["exp_avg"] for state in states]
    exp_avg_sqs = [state["exp_avg_sq"] for state in states]
    dots = path.adam(params, grads, exp_avgs, exp_avg_sqs, steps, hp)
    return [(pp, pg) for pp, pg in dots.tolist()]


def _layer_scope_step(
    path: _Path,
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    hp: _Hyper,
) -> None:
    """``gamma_scope="layer"``: each tensor runs Algorithm 1 on its own."""
    steps = _advance([state["step"] for state in states])
    sgd = [i for i, state in enumerate(states) if state["switch_step"] is not None]
    adam = [i for i, state in enumerate(states) if state["switch_step"] is None]
    if sgd:
        _sgd_phase(
            path,
            [params[i] for i in sgd],
            [grads[i] for i in sgd],
            [states[i] for i in sgd],
            [_sgd_lr(states[i], hp.lr) for i in sgd],
            hp,
        )
    if not adam:
        return
    dots = _adam_phase(
        path,
        [params[i] for i in adam],
        [grads[i] for i in adam],
        [states[i] for i in adam],
        [steps[i] for i in adam],
        hp,
    )
    for i, (pp, pg) in zip(adam, dots, strict=True):
        state, k = states[i], steps[i]
        state["lambda"], lam_hat = _projection(
            pp,
            pg,
            state["lambda"],
            k,
            beta2=hp.beta2,
            switch_eps=hp.switch_eps,
            switch_test=hp.switch_test,
        )
        if lam_hat is not None:
            _switch(state, k, lam_hat, hp.lr, hp.beta1)
            del state["exp_avg"], state["exp_avg_sq"]


def _global_scope_step(
    path: _Path,
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    hp: _Hyper,
) -> dict[str, Any]:
    """``gamma_scope="global"``: one ``gamma`` and one switch per group.

    ``states`` all hold the group's record on entry; the updated record is returned.
    """
    record = {key: states[0][key] for key in _RECORD_KEYS}
    steps = _advance([state["step"] for state in states])
    if record["switch_step"] is not None:
        _sgd_phase(path, params, grads, states, [_sgd_lr(record, hp.lr)] * len(params), hp)
        return record
    dots = _adam_phase(path, params, grads, states, steps, hp)
    pp = sum(d[0] for d in dots)
    pg = sum(d[1] for d in dots)
    k = record["group_step"] = record["group_step"] + 1
    record["lambda"], lam_hat = _projection(
        pp,
        pg,
        record["lambda"],
        k,
        beta2=hp.beta2,
        switch_eps=hp.switch_eps,
        switch_test=hp.switch_test,
    )
    if lam_hat is not None:
        _switch(record, k, lam_hat, hp.lr, hp.beta1)
    return record
