"""Responses about trials: one trial, a page of them, and a trial's learning curve.

Floats that may be non-finite follow one rule (RELIABILITY N2): JSON has no inf/nan, so
an objective value is sent as ``value: null`` with ``value_kind: "inf" | "-inf" | "nan"``
(``"finite"`` otherwise; both ``null`` while there is no value). Curve points, where the
trial's ``diverged`` flag already tells the story, send a non-finite loss as ``null``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import AfterValidator, Field, model_validator

from api_schemas.common import JobId, Page, Schema, ValueKind, encode_float

TrialState: TypeAlias = Literal["waiting", "running", "complete", "pruned", "fail", "cancelled"]


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


CurveFloat: TypeAlias = Annotated[float | None, AfterValidator(_finite_or_none)]


def encode_value_fields(model: Any) -> None:
    """Move a non-finite ``value`` into ``value_kind`` (the N2 rule), in place."""
    if model.value is not None:
        model.value, model.value_kind = encode_float(model.value)


class TrialRead(Schema):
    """One trial. ``params`` are Optuna's (``{"optimizer": "adamw", "adamw.lr": 3e-3}``);
    ``hyperparameters`` are the optimizer's resolved constructor arguments."""

    number: int
    state: TrialState
    optimizer: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    value: float | None = None
    value_kind: ValueKind | None = None
    duration_s: float | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    failure_reason: str | None = None
    attempt: int = 1
    seed: int | None = None
    device: str | None = None
    diverged: bool = False

    @model_validator(mode="after")
    def _n2(self) -> Self:
        encode_value_fields(self)
        return self


TrialList = Page[TrialRead]


class CurvePoint(Schema):
    """One epoch of a trial; ``metrics`` holds every metric reported at that epoch."""

    epoch: int
    step: int
    wall_time: float
    train_loss: CurveFloat = None
    val_loss: CurveFloat = None
    val_metric: CurveFloat = None
    metrics: dict[str, CurveFloat] = Field(default_factory=dict)


class CurveRead(Schema):
    job_id: JobId
    trial: int
    metric: str
    points: list[CurvePoint]


__all__ = [
    "CurvePoint",
    "CurveRead",
    "TrialList",
    "TrialRead",
    "TrialState",
    "encode_value_fields",
]
