"""Build an optimizer (or a wrapped one) from its registry name and hyperparameters."""

from __future__ import annotations

import importlib
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
    **hyperparameters: Any,
) -> torch.optim.Optimizer:
    """Construct the optimizer ``name`` over ``params``.

    Hyperparameters may be given as scalars (``beta1=0.9``) or as the class's own
    packed arguments (``betas=(0.9, 0.999)``); missing ones take the spec's defaults.
    ``total_steps`` fills hyperparameters that the paper ties to the run length
    (AdEMAMix's warm-ups) when they are not given.

    Raises:
        KeyError: unknown optimizer name.
        ValueError: a hyperparameter unknown to the spec or outside its domain.
    """
    spec = get_spec(name)
    kwargs = spec.resolve(hyperparameters, total_steps=total_steps)
    if WRAPPER_SEPARATOR not in name:
        return import_path(spec.cls_path)(params, **kwargs)  # type: ignore[no-any-return]
    outer, inner = split_wrapper_kwargs(spec, kwargs)
    base_name = name.partition(WRAPPER_SEPARATOR)[2]
    base = import_path(get_spec(base_name).cls_path)(params, **inner)
    return import_path(spec.cls_path)(base, **outer)  # type: ignore[no-any-return]
