"""The history file format (``optserve.history``, version 1): finished jobs and their trials.

A history file is data from elsewhere, so it is parsed as JSON (optionally gzip) and
validated by these models before anything is written: unknown fields, non-finite
floats, duplicate ids or trial numbers and job specs the API would refuse are all
errors that name the place (``jobs.3.trials.7.value``). Nothing is unpickled.

Non-finite objective values follow the API's N2 rule (``value: null`` plus
``value_kind``); curve points carry a non-finite loss as ``null``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import Field, JsonValue, StringConstraints, field_validator, model_validator

from api_schemas import JobCreate
from api_schemas.common import FiniteFloat, Schema, StrictNonNegativeInt, ValueKind
from api_schemas.search_space import ResolvedSpace

FORMAT: Literal["optserve.history"] = "optserve.history"
VERSION: Literal[1] = 1
MAX_JOBS = 10_000
MAX_TRIALS_PER_JOB = 5_000
MAX_EPOCHS_PER_TRIAL = 1_000

Text = Annotated[str, StringConstraints(max_length=4000)]
MaybeFloat = FiniteFloat | None
TerminalJobStatus = Literal["completed", "failed", "cancelled"]
TerminalTrialState = Literal["complete", "pruned", "fail", "cancelled"]


class HistoryCurvePoint(Schema):
    """One epoch of a trial, as ``curve_points`` stores it."""

    epoch: StrictNonNegativeInt
    step: StrictNonNegativeInt
    examples: StrictNonNegativeInt
    wall_time: Annotated[FiniteFloat, Field(ge=0)]
    train_loss: MaybeFloat = None
    val_loss: MaybeFloat = None
    val_metric: MaybeFloat = None
    lr: MaybeFloat = None
    metrics: Annotated[dict[str, MaybeFloat], Field(max_length=64)] = Field(default_factory=dict)


class HistoryTrial(Schema):
    """One finished attempt at a slot: what was tried, with which seed, and how it went."""

    number: StrictNonNegativeInt
    slot: StrictNonNegativeInt
    attempt: Annotated[int, Field(strict=True, ge=1)]
    state: TerminalTrialState
    optimizer: Annotated[str, StringConstraints(max_length=64)] | None = None
    params: dict[str, JsonValue] = Field(default_factory=dict)
    hyperparameters: dict[str, JsonValue] = Field(default_factory=dict)
    value: MaybeFloat = None
    value_kind: ValueKind | None = None
    seed: StrictNonNegativeInt | None = None
    failure_reason: Text | None = None
    diverged: bool = False
    device: Annotated[str, StringConstraints(max_length=32)] | None = None
    n_parameters: StrictNonNegativeInt | None = None
    versions: dict[str, Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=dict
    )
    source: dict[str, JsonValue] | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    curve: Annotated[list[HistoryCurvePoint], Field(max_length=MAX_EPOCHS_PER_TRIAL)] = Field(
        default_factory=list
    )

    @field_validator("curve")
    @classmethod
    def _unique_epochs(cls, curve: list[HistoryCurvePoint]) -> list[HistoryCurvePoint]:
        epochs = [p.epoch for p in curve]
        if len(set(epochs)) != len(epochs):
            raise ValueError("epochs of a trial's curve must be unique")
        return curve


class HistoryJob(Schema):
    """A finished job: its accepted spec, resolved space, fingerprint and trials."""

    id: uuid.UUID
    name: Annotated[str, StringConstraints(max_length=128)] | None = None
    status: TerminalJobStatus
    error: Text | None = None
    shared: bool = False
    spec: dict[str, Any]
    resolved_space: dict[str, Any]
    fingerprint: dict[str, JsonValue] | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    trials: Annotated[list[HistoryTrial], Field(max_length=MAX_TRIALS_PER_JOB)] = Field(
        default_factory=list
    )

    @field_validator("spec")
    @classmethod
    def _valid_spec(cls, spec: dict[str, Any]) -> dict[str, Any]:
        # A file is untrusted: the spec must pass every check a new job passes.
        JobCreate.model_validate(spec)
        return spec

    @field_validator("resolved_space")
    @classmethod
    def _valid_space(cls, space: dict[str, Any]) -> dict[str, Any]:
        ResolvedSpace.model_validate(space)
        return space

    @model_validator(mode="after")
    def _unique_trials(self) -> Self:
        numbers = [t.number for t in self.trials]
        if len(set(numbers)) != len(numbers):
            raise ValueError("trial numbers of a job must be unique")
        attempts = [(t.slot, t.attempt) for t in self.trials]
        if len(set(attempts)) != len(attempts):
            raise ValueError("(slot, attempt) pairs of a job must be unique")
        n_slots = self.n_slots
        if any(t.slot >= n_slots for t in self.trials):
            raise ValueError(f"a trial's slot is beyond the job's {n_slots} slots")
        return self

    @property
    def n_slots(self) -> int:
        """Tuning slots plus a compare job's confirmation reruns (as ``jobs.service``)."""
        spec = self.spec
        confirm = int(spec.get("confirm_seeds") or 0) * len(spec["search_space"]["optimizers"])
        return int(spec["n_trials"]) + confirm


class HistoryFile(Schema):
    """The whole file: ``{"format": "optserve.history", "version": 1, "jobs": [...]}``."""

    format: Literal["optserve.history"]
    version: Literal[1]
    exported_at: dt.datetime
    jobs: Annotated[list[HistoryJob], Field(max_length=MAX_JOBS)]

    @field_validator("jobs")
    @classmethod
    def _unique_jobs(cls, jobs: list[HistoryJob]) -> list[HistoryJob]:
        ids = [j.id for j in jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("job ids must be unique")
        return jobs


__all__ = [
    "FORMAT",
    "VERSION",
    "HistoryCurvePoint",
    "HistoryFile",
    "HistoryJob",
    "HistoryTrial",
]
