"""Past configurations in a new job's search space: fit them in, and narrow ranges to them.

Pure functions over ``ResolvedSpace`` (no database), used by ``service.jobs.warm_start``.

A configuration is a dict of Optuna parameter values (``{"optimizer": "adamw",
"adamw.lr": 3e-3, ...}``). Fitting keeps a value the new space can sample: a number is
clipped into its range (and onto its step grid), a choice is kept only if the space
offers it, and a name the space does not tune is left out (the sampler draws it).
Values are in Optuna's sampled domain: a ``one_minus`` space samples ``1 - x``.

Narrowing (Perrone, Shen, Seeger, Archambeau and Jenatton, *Learning search spaces for
Bayesian optimization: Another view of hyperparameter transfer learning*, NeurIPS
2019): each float or int range becomes the smallest box that contains the past optima,
widened on each side by ``NARROW_MARGIN`` of the original width (on a log scale for a
log range), never past the original range. A range backed by fewer than
``NARROW_MIN_POINTS`` optima is kept: one point is a guess, not a box.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api_schemas.search_space import (
    OPTIMIZER_PARAM,
    SCHEDULE_PARAM,
    CategoricalParam,
    FixedParam,
    FloatParam,
    IntParam,
    ResolvedSpace,
    distribution_name,
    sampled_bounds,
    shared_distribution_name,
)
from api_schemas.warm_start import NarrowedRange

NARROW_MARGIN = 0.1
"""Each side of a narrowed box is widened by this share of the original range's width."""
NARROW_MIN_POINTS = 2
"""Past optima a range needs before it is narrowed."""
NO_SCHEDULE = "constant"
"""The schedule a configuration without one ran with (a constant learning rate)."""

_MISSING = object()


@dataclass(frozen=True)
class Fitted:
    """A configuration fitted into a job's space, and the names clipped or left out."""

    params: dict[str, Any]
    adjusted: list[str]


@dataclass(frozen=True)
class _Slot:
    """One tuned parameter of the space: where it lives, its Optuna name, its space."""

    kind: str  # "optimizer", "schedule" or "shared"
    owner: str  # the optimizer's or schedule's name ("" for a shared knob)
    group: dict[str, Any]  # the resolved space's dict that holds it (narrowing writes it)
    key: str  # the hyperparameter's name, its key in ``group``
    name: str  # Optuna's name
    space: Any


def _all_slots(resolved: ResolvedSpace) -> Iterator[_Slot]:
    """Every tuned parameter of the space, whichever optimizer or schedule owns it."""
    groups = [("optimizer", n, s) for n, s in resolved.optimizers.items()]
    groups += [("schedule", n, s) for n, s in resolved.schedules.items()]
    for kind, owner, spaces in groups:
        for hp, space in spaces.items():
            if not isinstance(space, FixedParam):
                yield _Slot(kind, owner, spaces, hp, distribution_name(owner, hp, space), space)
    for knob, space in resolved.shared.items():
        if not isinstance(space, FixedParam):
            name = shared_distribution_name(knob, space)
            yield _Slot("shared", "", resolved.shared, knob, name, space)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _on_grid(value: float, low: float, step: float, high: float) -> float:
    steps = math.floor((high - low) / step + 1e-9)
    return low + min(max(round((value - low) / step), 0), steps) * step


def _kind(value: Any) -> str:
    """A choice's kind: ``True == 1`` in Python, but a flag is not a number."""
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


def _fit_value(value: Any, space: Any) -> Any:
    """``value`` as ``space`` can sample it, or ``_MISSING`` when it cannot hold it."""
    if isinstance(space, CategoricalParam):
        same = [c for c in space.choices if c == value and _kind(c) == _kind(value)]
        return same[0] if same else _MISSING
    if not isinstance(space, FloatParam | IntParam) or (x := _number(value)) is None:
        return _MISSING
    low, high = sampled_bounds(space)
    if isinstance(space, IntParam):
        return int(_on_grid(x, low, float(space.step), high))
    if space.step is not None:
        return _on_grid(x, low, space.step, high)
    return min(max(x, low), high)


def _from_hyperparameter(values: Mapping[str, Any] | None, key: str, space: Any) -> Any:
    """A value by hyperparameter name, in the sampled domain (``1 - x`` for one_minus)."""
    if not values or key not in values:
        return _MISSING
    value = values[key]
    if isinstance(space, FloatParam) and space.one_minus and (x := _number(value)) is not None:
        return 1.0 - x
    return value


def fit(
    resolved: ResolvedSpace,
    optimizer: str,
    params: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    schedule: Mapping[str, Any] | None,
) -> Fitted | None:
    """A past configuration in ``resolved``; ``None`` when its optimizer is not in it.

    A parameter is taken by its Optuna name, else from the hyperparameter (or schedule
    setting) of the same name, so a past job that sampled ``beta2`` directly still
    warm-starts a job that samples ``one_minus_beta2``.
    """
    if optimizer not in resolved.optimizers:
        return None
    out: dict[str, Any] = {OPTIMIZER_PARAM: optimizer}
    adjusted: list[str] = []
    chosen = None
    if resolved.schedules:
        name = schedule.get("name") if schedule else NO_SCHEDULE
        if isinstance(name, str) and name in resolved.schedules:
            out[SCHEDULE_PARAM] = chosen = name
        else:
            adjusted.append(SCHEDULE_PARAM)
    owners = {"optimizer": optimizer, "schedule": chosen, "shared": ""}
    for slot in _all_slots(resolved):
        if owners[slot.kind] != slot.owner:
            continue  # another optimizer's (or schedule's): not sampled with this one
        value = params.get(slot.name, _MISSING)
        if value is _MISSING:
            settings = schedule if slot.kind == "schedule" else hyperparameters
            value = _from_hyperparameter(settings, slot.key, slot.space)
        fitted = _MISSING if value is _MISSING else _fit_value(value, slot.space)
        if fitted is _MISSING:
            adjusted.append(slot.name)
            continue
        out[slot.name] = fitted
        if fitted != value:
            adjusted.append(slot.name)
    return Fitted(out, adjusted)


# -- narrowing ------------------------------------------------------------------------------
def _scale(space: FloatParam | IntParam) -> tuple[Any, Any]:
    if space.log:
        return math.log, math.exp
    return (lambda v: v), (lambda v: v)


def _box(space: FloatParam | IntParam, values: Sequence[float]) -> tuple[float, float]:
    """The widened box around ``values`` in the sampled domain, inside the range."""
    low, high = sampled_bounds(space)
    to, back = _scale(space)
    margin = NARROW_MARGIN * (to(high) - to(low))
    lo_t, hi_t = to(min(values)) - margin, to(max(values)) + margin
    # at the range's edge keep its exact bound: exp(log(x)) need not give x back
    box_low = low if lo_t <= to(low) else min(back(lo_t), min(values))
    box_high = high if hi_t >= to(high) else max(back(hi_t), max(values))
    step = float(space.step) if space.step is not None else None
    if step is not None:  # outwards onto the range's own grid (an int's step is 1 or more)
        box_low = low + math.floor((box_low - low) / step + 1e-9) * step
        box_high = min(low + math.ceil((box_high - low) / step - 1e-9) * step, high)
    return box_low, box_high


def _as_range(space: FloatParam | IntParam, box: tuple[float, float]) -> tuple[float, float]:
    """A box in the sampled domain as the space's own ``low``/``high`` (``x`` for one_minus)."""
    if isinstance(space, FloatParam) and space.one_minus:
        return 1.0 - box[1], 1.0 - box[0]
    return box


def narrow(
    resolved: ResolvedSpace, configurations: Sequence[Mapping[str, Any]]
) -> dict[str, NarrowedRange]:
    """Shrink each float/int range of ``resolved`` around the configurations, in place.

    Returns the narrowed ranges by Optuna name (the box and the range before it).
    """
    narrowed: dict[str, NarrowedRange] = {}
    for slot in _all_slots(resolved):
        space = slot.space
        if not isinstance(space, FloatParam | IntParam):
            continue
        values = [
            x for c in configurations if (x := _number(c.get(slot.name, _MISSING))) is not None
        ]
        if len(values) < NARROW_MIN_POINTS:
            continue
        low, high = _as_range(space, _box(space, values))
        if isinstance(space, IntParam):
            low, high = int(low), int(high)
        if (low, high) == (space.low, space.high):
            continue
        slot.group[slot.key] = space.model_copy(update={"low": low, "high": high})
        narrowed[slot.name] = NarrowedRange(
            low=low, high=high, original_low=space.low, original_high=space.high
        )
    return narrowed


__all__ = ["NARROW_MARGIN", "NARROW_MIN_POINTS", "Fitted", "fit", "narrow", "sampled_bounds"]
