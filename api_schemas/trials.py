"""Responses about trials: one trial, a page of them, and a trial's learning curve.

Floats that may be non-finite follow one rule (RELIABILITY N2): JSON has no inf/nan, so
an objective value is sent as ``value: null`` with ``value_kind: "inf" | "-inf" | "nan"``
(``"finite"`` otherwise; both ``null`` while there is no value). Curve points, where the
trial's ``diverged`` flag already tells the story, send a non-finite loss as ``null``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
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
    source: dict[str, Any] | None = None
    """Where the configuration came from when it was not sampled (a warm start's
    ``{"kind": "warm_start", "job_id", "trial", "similarity"}``); null when sampled."""

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

    @classmethod
    def from_stored(
        cls,
        *,
        epoch: int,
        step: int,
        wall_time: float,
        train_loss: float | None,
        val_loss: float | None,
        val_metric: float | None,
        metrics: Mapping[str, float | None],
    ) -> CurvePoint:
        """A point read back from our own table, built without validation.

        A page of curves holds thousands of points and validating each costs more than
        the query (~0.1 ms a point); the columns are typed already, so only the N2 rule
        (non-finite floats become null) is applied here.
        """
        return cls.model_construct(
            epoch=epoch,
            step=step,
            wall_time=wall_time,
            train_loss=_finite_or_none(train_loss),
            val_loss=_finite_or_none(val_loss),
            val_metric=_finite_or_none(val_metric),
            metrics={k: _finite_or_none(v) for k, v in metrics.items()},
        )


class CurveRead(Schema):
    job_id: JobId
    trial: int
    metric: str
    points: list[CurvePoint]


class TrialCurve(Schema):
    """One trial's learning curve in ``GET /v1/jobs/{id}/curves`` (a page holds many)."""

    number: int
    optimizer: str | None = None
    state: TrialState
    value: float | None = None
    value_kind: ValueKind | None = None
    points: list[CurvePoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _n2(self) -> Self:
        encode_value_fields(self)
        return self


CurvePage = Page[TrialCurve]

ImportanceMethod: TypeAlias = Literal["ped_anova", "fanova"]


class ImportanceRead(Schema):
    """``GET /v1/jobs/{id}/importance``: how much each parameter explains the objective.

    Computed over the job's completed trials; with fewer than the minimum, ``importances``
    is empty and ``n_trials`` says how many completed trials there are.
    """

    metric: str
    importances: dict[str, float]
    n_trials: int
    method: ImportanceMethod


__all__ = [
    "CurvePage",
    "CurvePoint",
    "CurveRead",
    "ImportanceMethod",
    "ImportanceRead",
    "TrialCurve",
    "TrialList",
    "TrialRead",
    "TrialState",
    "encode_value_fields",
]
