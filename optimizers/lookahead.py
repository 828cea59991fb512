"""Lookahead: slow weights pulled towards an inner optimizer's fast weights (Zhang et al., 2019)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, overload

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

__all__ = ["Lookahead"]

_SLOW = "lookahead_slow"


class Lookahead(Optimizer):
    r"""Lookahead (Zhang et al., 2019), Algorithm 1 of the paper, over any optimizer.

    The inner optimizer ``A`` moves the fast weights ``theta``; every ``k`` of its steps
    the slow weights ``phi`` take a step towards them and the fast weights restart there::

        phi <- theta                                   before the first step
        for t = 1, 2, ...:
            theta <- A.step(theta)
            if t % k == 0:
                phi <- phi + alpha * (theta - phi)
                theta <- phi

    The slow weights are copied from the parameters lazily, just before the first
    ``step()``: parameters loaded or edited after the optimizer was built are picked up,
    and the first synchronisation is never skipped. They are kept in float32 for
    bf16/fp16 parameters (in the parameter's dtype otherwise), so that the small pulls
    ``alpha * (theta - phi)`` are not rounded away.

    The wrapper shares ``param_groups`` (the same list) with the inner optimizer, so a
    learning-rate scheduler attached to the wrapper drives the inner optimizer, and
    ``add_param_group`` is delegated to it. ``state`` holds the wrapper's own state
    (``state[p]["lookahead_slow"]``); the inner state lives in ``optimizer.state``.
    ``state_dict()`` is the inner optimizer's, with each parameter's slow weights added
    to its entry under ``"lookahead_slow"`` and the step counter, ``k`` and ``alpha``
    under the top-level key ``"lookahead"``; ``load_state_dict`` restores all three.

    Args:
        optimizer: the inner optimizer, any ``torch.optim.Optimizer``.
        k: inner steps between synchronisations, an int >= 1 (default: 5).
        alpha: slow-weights step size, in (0, 1] (default: 0.5). ``alpha = 1`` is the
            inner optimizer alone.

    References:
        Zhang, Lucas, Hinton, Ba. Lookahead Optimizer: k steps forward, 1 step back.
        NeurIPS 2019. https://arxiv.org/abs/1907.08610
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Invalid k value: {k} (must be an integer >= 1)")
        if not (isinstance(alpha, int | float) and 0.0 < alpha <= 1.0):
            raise ValueError(f"Invalid alpha value: {alpha} (must be in (0, 1])")
        # Optimizer.__init__ sets up the hook registries and the step profiling; it is
        # given throwaway groups, then the inner optimizer's list is shared instead.
        super().__init__([{"params": g["params"]} for g in optimizer.param_groups], {})
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.defaults = {**optimizer.defaults, "lookahead_k": k, "lookahead_alpha": alpha}
        self.k = k
        self.alpha = float(alpha)
        self.lookahead_step = 0

    def __getstate__(self) -> dict[str, Any]:
        return {
            **super().__getstate__(),
            "optimizer": self.optimizer,
            "k": self.k,
            "alpha": self.alpha,
            "lookahead_step": self.lookahead_step,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.param_groups = self.optimizer.param_groups

    def __repr__(self) -> str:
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        return f"Lookahead (k={self.k}, alpha={self.alpha},\n{inner}\n)"

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer (the list is shared, so to this one too)."""
        # Optimizer.__init__ calls this before ``self.optimizer`` exists.
        if "optimizer" not in self.__dict__:
            super().add_param_group(param_group)
            return
        self.optimizer.add_param_group(param_group)

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One inner step (``closure`` goes to the inner optimizer), then a sync every k."""
        self._init_slow()
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self.lookahead_step += 1
        if self.lookahead_step % self.k == 0:
            self._sync()
        return loss

    def _init_slow(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if _SLOW not in state:
                    state[_SLOW] = p.detach().to(_slow_dtype(p), copy=True)

    def _sync(self) -> None:
        """``phi <- phi + alpha (theta - phi); theta <- phi`` for every parameter."""
        for group in self.param_groups:
            for p in group["params"]:
                slow = self.state[p][_SLOW]
                _lookahead_update(p, slow, alpha=self.alpha)

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state dict, plus the slow weights and the step counter."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        inner = self.optimizer.state_dict()
        index = _param_index(self.param_groups)
        state = dict(inner["state"])
        for p, p_state in self.state.items():
            if _SLOW in p_state:
                i = index[id(p)]
                state[i] = {**state.get(i, {}), _SLOW: p_state[_SLOW]}
        state_dict: dict[str, Any] = {
            **inner,
            "state": state,
            "lookahead": {"step": self.lookahead_step, "k": self.k, "alpha": self.alpha},
        }
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the inner state, the slow weights, the step counter, k and alpha."""
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        slow: dict[Any, Tensor] = {}
        inner_state: dict[Any, Any] = {}
        for key, p_state in state_dict["state"].items():
            rest = {name: value for name, value in p_state.items() if name != _SLOW}
            if _SLOW in p_state:
                slow[key] = p_state[_SLOW]
            if rest:
                inner_state[key] = rest
        inner = {k: v for k, v in state_dict.items() if k != "lookahead"}
        self.optimizer.load_state_dict({**inner, "state": inner_state})
        # The inner load_state_dict rebinds its param_groups to a new list.
        self.param_groups = self.optimizer.param_groups
        self.state = defaultdict(dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for key, value in slow.items():
            p = params[key]
            self.state[p][_SLOW] = value.to(device=p.device, dtype=_slow_dtype(p), copy=True)
        meta = state_dict.get("lookahead", {})
        self.lookahead_step = int(meta.get("step", 0))
        self.k = int(meta.get("k", self.k))
        self.alpha = float(meta.get("alpha", self.alpha))
        self.defaults.update(lookahead_k=self.k, lookahead_alpha=self.alpha)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)


def _param_index(param_groups: list[dict[str, Any]]) -> dict[int, int]:
    """``id(p)`` to the index ``Optimizer.state_dict`` gives ``p``: its first position."""
    index: dict[int, int] = {}
    params = (p for group in param_groups for p in group["params"])
    for position, p in enumerate(params):
        index.setdefault(id(p), position)
    return index


def _slow_dtype(param: Tensor) -> torch.dtype:
    if param.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return param.dtype


def _lookahead_update(param: Tensor, slow: Tensor, *, alpha: float) -> None:
    """One synchronisation for one tensor; mutates ``slow`` and ``param`` in place."""
    slow.lerp_(param.to(slow.dtype), alpha)
    param.copy_(slow)
