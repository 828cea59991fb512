"""Record a job's events in the transaction of the state change they describe.

``emit`` bumps ``jobs.event_seq`` with an ``UPDATE … RETURNING``: on PostgreSQL that row
lock is held until the transaction ends, so the events of one job are numbered and
committed in the same order (SQLite serialises every writer anyway). A reader that has
seen event ``n`` therefore never misses an event ``< n`` that commits later, and an event
whose transaction rolls back takes its number with it (no gap).

Callers lock the job (``trials.lock_job``) before they touch slots or runs, and only
then emit: the job-then-slots order every other writer uses, so no deadlock appears.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from api_schemas.events import EVENT_TYPES
from service.json_values import replace_nonfinite
from service.models import CurvePoint, Job, JobEvent, TrialRun


def emit(
    session: Session,
    job_id: uuid.UUID,
    type: str,
    payload: Mapping[str, Any],
    trial_number: int | None = None,
) -> int:
    """Add an event to the job's stream; returns its sequence number."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; expected one of {sorted(EVENT_TYPES)}")
    seq = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(event_seq=Job.event_seq + 1)
        .returning(Job.event_seq)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    job = session.identity_map.get(identity_key(Job, job_id))
    if job is not None:  # keep a loaded row true without marking it changed
        set_committed_value(job, "event_seq", seq)
    session.add(
        JobEvent(
            job_id=job_id,
            seq=seq,
            type=type,
            trial_number=trial_number,
            payload=replace_nonfinite(payload),
        )
    )
    session.flush()
    return int(seq)


# -- trial events, built from the rows they describe ---------------------------------------
def trial_started(session: Session, run: TrialRun) -> int:
    return emit(
        session,
        run.job_id,
        "trial.started",
        {
            "trial": run.number,
            "slot": run.slot,
            "attempt": run.attempt,
            "optimizer": run.optimizer,
            "params": run.params,
            "hyperparameters": run.hyperparameters,
            "source": run.source,
        },
        trial_number=run.number,
    )


def trial_epoch(session: Session, run: TrialRun, point: CurvePoint) -> int:
    return emit(
        session,
        run.job_id,
        "trial.epoch",
        {
            "trial": run.number,
            "epoch": point.epoch,
            "step": point.step,
            "examples": point.examples,
            "wall_time": point.wall_time,
            "train_loss": point.train_loss,
            "val_loss": point.val_loss,
            "value": point.val_metric,
            "lr": point.lr,
            "metrics": point.metrics,
        },
        trial_number=run.number,
    )


def trial_finished(session: Session, run: TrialRun) -> int:
    """Emit the run's end as stored (reloaded: the terminal state was written by an UPDATE)."""
    session.refresh(run)
    duration = None
    if run.started_at is not None and run.finished_at is not None:
        duration = (run.finished_at - run.started_at).total_seconds()
    return emit(
        session,
        run.job_id,
        "trial.finished",
        {
            "trial": run.number,
            "state": run.state,
            "value": run.value,
            "reason": run.failure_reason,
            "diverged": run.diverged,
            "duration_s": duration,
        },
        trial_number=run.number,
    )
