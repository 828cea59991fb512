"""Sampling a trial's configuration from a job's resolved search space.

The optimizer is a categorical; each optimizer's hyperparameters are conditional on
it and named ``<optimizer>.<hyperparameter>`` so each keeps its own range. A prior on
``1 - x`` (EMA coefficients) is sampled as ``<optimizer>.one_minus_<name>``: the stored
parameter is then exactly what was sampled, never a relabelled value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from api_schemas.search_space import (
    WEIGHT_DECAY,
    distribution_name,
    shared_distribution_name,
)
from optimizers.registry import get_spec


@dataclass(frozen=True)
class Configuration:
    optimizer: str
    hyperparameters: dict[str, Any]
    schedule: str = "constant"
    schedule_params: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, Any] = field(default_factory=dict)
    """Shared knobs that replace the task's value for this trial (``batch_size``, ``grad_clip``)."""


def suggest_value(trial: optuna.Trial, name: str, space: Mapping[str, Any]) -> Any:
    """Draw one value; ``one_minus`` spaces are sampled on ``1 - x`` and mapped back."""
    kind = space["type"]
    if kind == "fixed":
        return space["value"]
    if kind == "categorical":
        return trial.suggest_categorical(name, list(space["choices"]))
    if kind == "int":
        step = space.get("step") or 1
        return trial.suggest_int(
            name, space["low"], space["high"], step=step, log=bool(space.get("log"))
        )
    if space.get("one_minus"):
        low, high = 1.0 - space["high"], 1.0 - space["low"]
        return 1.0 - trial.suggest_float(name, low, high, log=bool(space.get("log")))
    return trial.suggest_float(
        name, space["low"], space["high"], step=space.get("step"), log=bool(space.get("log"))
    )


def _suggest_group(
    trial: optuna.Trial, prefix: str, spaces: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    return {
        hp: suggest_value(trial, distribution_name(prefix, hp, space), space)
        for hp, space in spaces.items()
    }


def suggest(trial: optuna.Trial, resolved_space: Mapping[str, Any]) -> Configuration:
    optimizers = resolved_space["optimizers"]
    # a categorical even with one choice, so every trial's params name its optimizer
    optimizer = trial.suggest_categorical("optimizer", sorted(optimizers))
    hyperparameters = _suggest_group(trial, optimizer, optimizers[optimizer])
    shared = {
        knob: suggest_value(trial, shared_distribution_name(knob, space), space)
        for knob, space in (resolved_space.get("shared") or {}).items()
    }
    if WEIGHT_DECAY in shared and WEIGHT_DECAY in get_spec(optimizer).hparams:
        hyperparameters[WEIGHT_DECAY] = shared[WEIGHT_DECAY]
    overrides = {k: v for k, v in shared.items() if k != WEIGHT_DECAY}
    schedules = resolved_space.get("schedules") or {}
    if not schedules:
        return Configuration(optimizer, hyperparameters, task_overrides=overrides)
    schedule = trial.suggest_categorical("schedule", sorted(schedules))
    return Configuration(
        optimizer,
        hyperparameters,
        schedule,
        _suggest_group(trial, schedule, schedules[schedule]),
        overrides,
    )
