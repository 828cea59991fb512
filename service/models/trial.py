"""Trial slots, trial runs and their learning curves.

A *slot* is one unit of the job's budget (``n_trials`` of them). Each attempt at a slot
is a *run*: one Optuna trial. A run killed with its worker is failed and the slot is
queued again (up to ``max_attempts``); a deterministic failure ends the slot. The slot
table is what the worker claims with a conditional UPDATE, so a duplicate delivery of
the same message does nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import timestamp, uuid_pk


class SlotStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting to be dispatched
    DISPATCHED = "dispatched"  # message published, not claimed yet
    RUNNING = "running"  # claimed by a worker, heartbeat fresh
    DONE = "done"  # a run finished COMPLETE or PRUNED
    FAILED = "failed"  # terminal failure (non-retryable, or attempts exhausted)
    CANCELLED = "cancelled"


TERMINAL_SLOT_STATUSES = (SlotStatus.DONE, SlotStatus.FAILED, SlotStatus.CANCELLED)
ACTIVE_SLOT_STATUSES = (SlotStatus.DISPATCHED, SlotStatus.RUNNING)


class TrialState(enum.StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"
    CANCELLED = "cancelled"


class TrialSlot(Base):
    __tablename__ = "trial_slots"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued','dispatched','running','done','failed','cancelled')",
            name="status_enum",
        ),
        Index("ix_trial_slots_status", "status"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=SlotStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    dispatched_at: Mapped[dt.datetime | None] = timestamp()
    heartbeat_at: Mapped[dt.datetime | None] = timestamp()
    worker: Mapped[str | None] = mapped_column(String(128))


class TrialRun(Base):
    __tablename__ = "trial_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_trial_runs_job_number"),
        UniqueConstraint("job_id", "slot", "attempt", name="uq_trial_runs_job_slot_attempt"),
        CheckConstraint(
            "state IN ('running','complete','pruned','fail','cancelled')", name="state_enum"
        ),
        Index("ix_trial_runs_job_state", "job_id", "state"),
        Index("ix_trial_runs_job_optimizer", "job_id", "optimizer"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    slot: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)  # the Optuna trial number
    state: Mapped[str] = mapped_column(String(16), default=TrialState.RUNNING)
    optimizer: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    value: Mapped[float | None] = mapped_column(Float)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    diverged: Mapped[bool] = mapped_column(Boolean, default=False)
    seed: Mapped[int | None] = mapped_column(Integer)
    device: Mapped[str | None] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(128))
    n_parameters: Mapped[int | None] = mapped_column(Integer)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # where this run's configuration came from when it was not sampled: a warm start's
    # recommendation (``{"kind": "warm_start", "job_id": ..., "trial": ...}``)
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[dt.datetime | None] = timestamp()
    finished_at: Mapped[dt.datetime | None] = timestamp()


class CurvePoint(Base):
    __tablename__ = "curve_points"

    trial_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("trial_runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    examples: Mapped[int] = mapped_column(Integer)
    wall_time: Mapped[float] = mapped_column(Float)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_metric: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
