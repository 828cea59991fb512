"""Bookkeeping every optimizer module shares: argument checks, step counters, buckets.

The math of each update stays in its own module (one paper, one file); what is here
is the torch.optim plumbing that would otherwise be copied into each of them:
argument checks, step counters, buckets, closure handling and the choice between
the reference, foreach and fused paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor


def _is_number(value: object) -> bool:
    """A real number; ``True`` is an int to Python but never a learning rate."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_nonnegative(what: str, value: float) -> None:
    """torch's message shape: ``Invalid learning rate: -1``."""
    if not (_is_number(value) and math.isfinite(value) and value >= 0.0):
        raise ValueError(f"Invalid {what}: {value}")


def _check_flag(name: str, value: object) -> None:
    """A flag is a bool: ``bool("no")`` is True, so coercing would invert what was meant."""
    if not isinstance(value, bool):
        raise ValueError(f"Invalid {name} value: {value!r} (must be True or False)")


def _check_betas(betas: Sequence[float], count: int = 2) -> None:
    """Each EMA coefficient in [0, 1), named by index as torch names it."""
    if len(betas) != count:
        raise ValueError(f"Invalid betas: {betas!r} (expected {count} values)")
    for index, beta in enumerate(betas):
        if not (_is_number(beta) and 0.0 <= beta < 1.0):
            raise ValueError(f"Invalid beta parameter at index {index}: {beta}")


def _advance(state_steps: list[Tensor]) -> list[int]:
    """Increment every parameter's step counter and return the new counts.

    One ``_foreach_add_`` for all counters: an in-place add per tensor costs ~3 us,
    a sizeable share of a step's host time with many small tensors.
    """
    if state_steps:
        torch._foreach_add_(state_steps, 1.0)
    return [int(step_t.item()) for step_t in state_steps]


def _buckets(
    params: Sequence[Tensor], steps: Sequence[int]
) -> dict[tuple[torch.device, torch.dtype, int], list[int]]:
    """Indices of ``params`` grouped by (device, dtype, step).

    A foreach kernel takes one list per device and dtype, and the bias corrections
    are scalars per step count, so one bucket is one set of kernel launches.
    """
    out: dict[tuple[torch.device, torch.dtype, int], list[int]] = {}
    for i, (param, step) in enumerate(zip(params, steps, strict=True)):
        out.setdefault((param.device, param.dtype, step), []).append(i)
    return out


def _check_impl(foreach: bool | None, fused: bool | None) -> None:
    """``fused`` and ``foreach`` name two different fast paths: at most one may be asked for."""
    if fused and foreach:
        raise ValueError("`fused` and `foreach` cannot both be True")


def _check_param(optimizer: str, param: Tensor, grad: Tensor) -> None:
    """Dense real tensors only: the update rules are written for them."""
    if grad.is_sparse:
        raise RuntimeError(f"{optimizer} does not support sparse gradients")
    if torch.is_complex(param):
        raise RuntimeError(f"{optimizer} does not support complex parameters")


def _backfill(groups: list[dict[str, Any]], late_defaults: Mapping[str, Any]) -> None:
    """Give param groups unpickled from an older version the keys they lack.

    torch's ``__setstate__`` idiom: ``foreach`` and ``fused``, and each option added
    later, with the value that keeps the old behaviour.
    """
    for group in groups:
        for key, value in {"foreach": None, "fused": None, **late_defaults}.items():
            group.setdefault(key, value)


def _closure_loss(closure: Callable[[], float] | None) -> float | None:
    """The loss of ``closure`` evaluated with grad enabled (``step`` runs under no_grad)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


_Impl = TypeVar("_Impl")


def _choose_impl(group: dict[str, Any], single: _Impl, multi: _Impl, fused: _Impl) -> _Impl:
    """The path a param group asks for: ``fused=True``, ``foreach=False``, else foreach."""
    if group.get("fused"):
        return fused
    if group["foreach"] is False:
        return single
    return multi
