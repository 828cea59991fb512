"""A tuning job: the validated spec, its resolved search space and its lifecycle."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import timestamp, uuid_pk


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("n_trials > 0", name="n_trials_positive"),
        CheckConstraint("max_parallel > 0", name="max_parallel_positive"),
        CheckConstraint(
            "status IN ('queued','running','completed','failed','cancelled')", name="status_enum"
        ),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
        Index("ix_jobs_status", "status"),
        # NULL keys never collide, so jobs submitted without the header are unaffected
        Index("uq_jobs_tenant_idempotency_key", "tenant_id", "idempotency_key", unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolved_space: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_trials: Mapped[int] = mapped_column(Integer)
    max_parallel: Mapped[int] = mapped_column(Integer)
    max_failed_trials: Mapped[int | None] = mapped_column(Integer)
    study_name: Mapped[str] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    # set when a budget (timeout, target) ends the job early: nothing new starts, running
    # trials stop at their next epoch, and ``error`` takes this text when the job finishes
    stop_reason: Mapped[str | None] = mapped_column(Text)
    # ``Idempotency-Key`` of the POST that created the job and the SHA-256 of its body
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # the last sequence number given to an event of this job (see ``service.events``); the
    # UPDATE that bumps it locks the row, so events of one job commit in sequence order
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # an admin marked this job's history as usable by every tenant's recommendations
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # the task this job tunes, as the recommender compares tasks (model, parameter count,
    # dataset meta-features, epochs, batch size, metric, direction); set at submit time
    fingerprint: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = timestamp(nullable=False, default_now=True)
    started_at: Mapped[dt.datetime | None] = timestamp()
    finished_at: Mapped[dt.datetime | None] = timestamp()


class JobEvent(Base):
    """One entry of a job's event stream (``GET /v1/jobs/{id}/events``).

    ``seq`` counts from 1 per job with no gaps, and events commit in ``seq`` order, so a
    client that resumes with ``Last-Event-ID: n`` gets exactly the events after ``n``.
    """

    __tablename__ = "job_events"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    trial_number: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = timestamp(nullable=False, default_now=True)
