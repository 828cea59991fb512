"""Registries of Optuna samplers and pruners, keyed by the names ``api_schemas`` accepts.

Each trial loads the study afresh, so the sampler is built per trial: its seed is
derived from the job's seed, the slot and the attempt, otherwise every worker would
draw the same "random" start-up point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna

SamplerFactory = Callable[[int, Mapping[str, Any]], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[Mapping[str, Any]], optuna.pruners.BasePruner]


def _tpe(seed: int, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    # multivariate + group handle the conditional space (each optimizer its own
    # sub-space); constant_liar keeps parallel workers from proposing the same point.
    kwargs: dict[str, Any] = {"multivariate": True, "group": True, "constant_liar": True}
    kwargs.update(options)
    return optuna.samplers.TPESampler(seed=seed, **kwargs)


def _random(seed: int, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed, **options)


SAMPLERS: dict[str, SamplerFactory] = {"tpe": _tpe, "random": _random}

PRUNERS: dict[str, PrunerFactory] = {
    "none": lambda options: optuna.pruners.NopPruner(),
    "median": lambda options: optuna.pruners.MedianPruner(**options),
}


def trial_seed(base: int, slot: int, attempt: int) -> int:
    return (base * 1_000_003 + slot * 7919 + attempt) % (2**31 - 1)


def build_sampler(spec: Mapping[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    return SAMPLERS[spec.get("name", "tpe")](seed, spec.get("options") or {})


def build_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    return PRUNERS[spec.get("name", "none")](spec.get("options") or {})
