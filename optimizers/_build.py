"""Build an optimizer (or a wrapped one) from its registry name and hyperparameters."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from typing import Any

import torch

from optimizers.registry import WRAPPER_SEPARATOR, get_spec, split_wrapper_kwargs


def import_path(path: str) -> Any:
    """Resolve ``"package.module:Name"``: registry entries name classes, never import them."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def build(
    name: str,
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    *,
    total_steps: int | None = None,
    fused: bool | None = None,
    **hyperparameters: Any,
) -> torch.optim.Optimizer:
    """Construct the optimizer ``name`` over ``params``.

    Hyperparameters may be given as scalars (``beta1=0.9``) or as the class's own
    packed arguments (``betas=(0.9, 0.999)``); missing ones take the spec's defaults.
    ``total_steps`` fills hyperparameters that the paper ties to the run length
    (AdEMAMix's warm-ups) when they are not given. ``fused=True`` asks for the fused
    path where the class (a wrapper's base, for a composition) has one, and is
    ignored where it has none: it chooses how the step is computed, not what.

    Raises:
        KeyError: unknown optimizer name.
        ValueError: a hyperparameter unknown to the spec or outside its domain.
    """
    spec = get_spec(name)
    kwargs = spec.resolve(hyperparameters, total_steps=total_steps)
    if WRAPPER_SEPARATOR not in name:
        cls = import_path(spec.cls_path)
        return cls(params, **kwargs, **_path_kwargs(cls, fused))  # type: ignore[no-any-return]
    outer, inner = split_wrapper_kwargs(spec, kwargs)
    base_cls = import_path(get_spec(name.partition(WRAPPER_SEPARATOR)[2]).cls_path)
    base = base_cls(params, **inner, **_path_kwargs(base_cls, fused))
    return import_path(spec.cls_path)(base, **outer)  # type: ignore[no-any-return]


def _path_kwargs(cls: type, fused: bool | None) -> dict[str, bool]:
    """``{"fused": fused}`` where ``cls`` takes it, else nothing (its default path)."""
    if fused is None or "fused" not in inspect.signature(cls).parameters:
        return {}
    return {"fused": fused}
