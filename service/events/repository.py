"""Queries on ``job_events`` (reads only; ``recorder`` writes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Job, JobEvent
from service.models.job import TERMINAL_JOB_STATUSES


@dataclass(frozen=True)
class Position:
    """Where a job's stream stands: its last ``seq`` and whether more can come."""

    last_seq: int
    ended: bool


def position(session: Session, job_id: uuid.UUID) -> Position | None:
    """The job's stream position, or None when the job does not exist (any more)."""
    row = session.execute(select(Job.event_seq, Job.status).where(Job.id == job_id)).first()
    if row is None:
        return None
    return Position(last_seq=int(row.event_seq), ended=row.status in TERMINAL_JOB_STATUSES)


def events_after(session: Session, job_id: uuid.UUID, after: int, limit: int) -> list[JobEvent]:
    """Up to ``limit`` events with ``seq > after``, in order."""
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.seq > after)
        .order_by(JobEvent.seq)
        .limit(limit)
    )
    return list(session.scalars(stmt))
