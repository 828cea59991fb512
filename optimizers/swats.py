"""SWATS: Adam that switches to SGD with momentum once its LR estimate settles."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, overload

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optimizers._common import _check_betas, _check_nonnegative

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

    Two safeguards go beyond the paper: a switch needs ``Lambda > 0`` (a negative
    estimate, possible when Adam steps uphill, would make SGD ascend), and after the
    switch the SGD step follows the group's learning rate proportionally,
    ``(1 - b1) * Lambda * lr / lr_switch`` with ``lr_switch`` the rate at the switch,
    so a learning-rate schedule keeps acting; with a constant rate this is the paper.

    State per parameter: ``step`` (float32 CPU tensor), ``exp_avg`` and ``exp_avg_sq``
    (freed at the switch), ``momentum_buffer`` (from the switch on), and the record of
    the tensor's scope: ``lambda`` (``L``), ``switch_step`` (``k`` of the switch, or
    ``None``), ``sgd_lr`` (``(1 - b1) * Lambda``, the learning rate of the equivalent
    ``torch.optim.SGD(momentum=b1)``), ``switch_lr`` and, with the global scope,
    ``group_step``. With the global scope every tensor of the group holds the same
    record.

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
    ) -> None:
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
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("switch_test", "absolute")
            group.setdefault("gamma_scope", "layer")

    def _init_group(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]
    ) -> list[dict[str, Any]]:
        """Collect the tensors with a gradient; create their state; return their states."""
        states = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("SWATS does not support sparse gradients")
            if torch.is_complex(p):
                raise RuntimeError("SWATS does not support complex parameters")
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
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
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
            hparams: dict[str, Any] = {
                "lr": group["lr"],
                "beta1": beta1,
                "beta2": beta2,
                "eps": group["eps"],
                "weight_decay": group["weight_decay"],
                "switch_eps": group["switch_eps"],
                "switch_test": group["switch_test"],
            }
            if scope_global:
                record = _single_tensor_swats_global(params, grads, states, **hparams)
                self._share_record(group, record)
            else:
                _single_tensor_swats(params, grads, states, **hparams)
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


def _advance(step_t: Tensor) -> int:
    step_t += 1
    return int(step_t.item())


def _dot(a: Tensor, b: Tensor) -> float:
    """``a . b`` over all elements, accumulated in at least float32."""
    acc = torch.float64 if a.dtype == torch.float64 else torch.float32
    return float(torch.dot(a.reshape(-1).to(acc), b.reshape(-1).to(acc)).item())


def _swats_adam_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> Tensor:
    """Algorithm 1, lines 10-13, for one tensor: apply the Adam step ``p`` and return it."""
    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    step_size = lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    p_k = exp_avg.div(exp_avg_sq.sqrt().add_(eps)).mul_(-step_size)
    param.add_(p_k)
    return p_k


def _swats_sgd_update(
    param: Tensor, grad: Tensor, momentum_buffer: Tensor, *, lr: float, beta1: float
) -> None:
    """Algorithm 1, lines 6-7, for one tensor; ``lr`` is ``(1 - b1) * Lambda``."""
    momentum_buffer.mul_(beta1).add_(grad)
    param.add_(momentum_buffer, alpha=-lr)


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
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    *,
    lr: float,
    beta1: float,
) -> None:
    for param, grad, state in zip(params, grads, states, strict=True):
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.zeros_like(
                param, memory_format=torch.preserve_format
            )
        _swats_sgd_update(param, grad, buf, lr=_sgd_lr(state, lr), beta1=beta1)


def _l2(params: list[Tensor], grads: list[Tensor], weight_decay: float) -> list[Tensor]:
    if weight_decay == 0.0:
        return grads
    return [g.add(p, alpha=weight_decay) for p, g in zip(params, grads, strict=True)]


def _single_tensor_swats(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    switch_eps: float,
    switch_test: str,
) -> None:
    """Reference path, ``gamma_scope="layer"``: each tensor runs Algorithm 1 on its own."""
    grads = _l2(params, grads, weight_decay)
    for param, grad, state in zip(params, grads, states, strict=True):
        k = _advance(state["step"])
        if state["switch_step"] is not None:
            _sgd_phase([param], [grad], [state], lr=lr, beta1=beta1)
            continue
        p_k = _swats_adam_update(
            param,
            grad,
            state["exp_avg"],
            state["exp_avg_sq"],
            step=k,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
        )
        state["lambda"], lam_hat = _projection(
            _dot(p_k, p_k),
            _dot(p_k, grad),
            state["lambda"],
            k,
            beta2=beta2,
            switch_eps=switch_eps,
            switch_test=switch_test,
        )
        if lam_hat is not None:
            _switch(state, k, lam_hat, lr, beta1)
            del state["exp_avg"], state["exp_avg_sq"]


def _single_tensor_swats_global(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    switch_eps: float,
    switch_test: str,
) -> dict[str, Any]:
    """Reference path, ``gamma_scope="global"``: one ``gamma`` and one switch per group.

    ``states`` all hold the group's record on entry; the updated record is returned.
    """
    grads = _l2(params, grads, weight_decay)
    record = {key: states[0][key] for key in _RECORD_KEYS}
    steps = [_advance(state["step"]) for state in states]
    if record["switch_step"] is not None:
        _sgd_phase(params, grads, states, lr=lr, beta1=beta1)
        return record
    pp = pg = 0.0
    for param, grad, state, step in zip(params, grads, states, steps, strict=True):
        p_k = _swats_adam_update(
            param,
            grad,
            state["exp_avg"],
            state["exp_avg_sq"],
            step=step,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
        )
        pp += _dot(p_k, p_k)
        pg += _dot(p_k, grad)
    k = record["group_step"] = record["group_step"] + 1
    record["lambda"], lam_hat = _projection(
        pp, pg, record["lambda"], k, beta2=beta2, switch_eps=switch_eps, switch_test=switch_test
    )
    if lam_hat is not None:
        _switch(record, k, lam_hat, lr, beta1)
    return record
