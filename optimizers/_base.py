"""The ``torch.optim`` plumbing of an optimizer with three paths: reference, foreach, fused.

torch.optim writes ``_init_group`` and ``step`` out again in every optimizer's file.
Here AdEMAMix, EVE, LAMB, RAdam and SET-Adam share them, so each module states only
what is its own: ``__init__`` (the checks of its hyperparameters), its state buffers,
its three update functions and the keywords they take from a param group. The math
stays in the module of its paper.

The update functions share one signature, as ``optimizers._fused`` expects:
``impl(params, grads, *buffers, steps, **hyperparameters)``, where ``buffers`` are
lists in the order :meth:`MultiPathOptimizer._buffers` gives them (an empty list for a
buffer the group does not keep) and ``steps`` the parameters' new step counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias, overload

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

from optimizers._common import _advance, _backfill, _check_param, _choose_impl, _closure_loss

__all__ = ["Buffer", "Impl", "MultiPathOptimizer"]

Impl: TypeAlias = Callable[..., None]
# A state buffer's name, and whether this param group keeps it.
Buffer: TypeAlias = tuple[str, bool]
_ADAM_BUFFERS: tuple[Buffer, ...] = (("exp_avg", True), ("exp_avg_sq", True))


class MultiPathOptimizer(Optimizer):
    """An optimizer whose step is one of three update functions over a param group.

    A subclass provides :meth:`_paths` and :attr:`update_keys`; it overrides
    :meth:`_hyperparameters`, :meth:`_buffers` (Adam's two moments by default),
    :meth:`_updates` (every tensor with a gradient by default) and
    :attr:`late_defaults` where it differs.
    """

    #: Group keys that a pickle from before an option existed lacks, with the value
    #: that keeps the old behaviour (``foreach`` and ``fused`` are always back-filled).
    late_defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    #: Group keys the update functions take as they are (a group may hold others,
    #: such as the ``initial_lr`` of torch's LR schedulers).
    update_keys: ClassVar[tuple[str, ...]] = ()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        _backfill(self.param_groups, self.late_defaults)

    def _paths(self) -> tuple[Impl, Impl, Impl]:
        """The (reference, foreach, fused) update functions."""
        raise NotImplementedError

    def _hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        """The keywords the update functions take, from a param group: ``betas``
        unpacked as ``beta1, beta2...``, and each of :attr:`update_keys` as it is."""
        betas = {f"beta{i}": beta for i, beta in enumerate(group["betas"], start=1)}
        return {**betas, **{key: group[key] for key in self.update_keys}}

    def _buffers(self, group: dict[str, Any]) -> Sequence[Buffer]:
        """The state buffers (zeros like the parameter), in the update functions' order."""
        return _ADAM_BUFFERS

    def _updates(self, param: Tensor) -> bool:
        """Whether ``param``, which has a gradient, takes part in this step."""
        return True

    def _init_group(
        self, group: dict[str, Any]
    ) -> tuple[list[Tensor], list[Tensor], list[list[Tensor]], list[Tensor]]:
        """The group's tensors to update: params, grads, buffer lists and step counters.

        State is created lazily. A buffer is created whenever a kept one is missing,
        not only with a parameter's first state: a group may start keeping it later
        (AdEMAMix's ``b1`` raised from 0, EVE's ``amsgrad`` switched on), or a state
        may be loaded from such a run.
        """
        buffers = self._buffers(group)
        params: list[Tensor] = []
        grads: list[Tensor] = []
        lists: list[list[Tensor]] = [[] for _ in buffers]
        state_steps: list[Tensor] = []
        for p in group["params"]:
            grad = p.grad
            if grad is None or not self._updates(p):
                continue
            _check_param(type(self).__name__, p, grad)
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
            for (name, kept), tensors in zip(buffers, lists, strict=True):
                if not kept:
                    continue
                if name not in state:
                    state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
                tensors.append(state[name])
            params.append(p)
            grads.append(grad)
            state_steps.append(state["step"])
        return params, grads, lists, state_steps

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step; ``closure`` re-evaluates the loss."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            params, grads, buffers, state_steps = self._init_group(group)
            if not params:
                continue
            impl = _choose_impl(group, *self._paths())
            impl(params, grads, *buffers, _advance(state_steps), **self._hyperparameters(group))
        return loss
