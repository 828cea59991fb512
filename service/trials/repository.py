"""Every query on trial slots, runs and curves (Polar rule: queries live in repositories).

Workers and the reconciler write through these functions; the API reads through them.
State changes are conditional UPDATEs so that a late or duplicate writer (a zombie
worker, a second reconciler) changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.models import CurvePoint, Job, SlotStatus, TrialRun, TrialSlot, TrialState
from service.models._types import utcnow
from service.models.trial import ACTIVE_SLOT_STATUSES, TERMINAL_SLOT_STATUSES


def lock_job(session: Session, job_id: uuid.UUID) -> Job | None:
    """The job row, locked on PostgreSQL so that dispatchers of one job take turns."""
    return session.scalar(select(Job).where(Job.id == job_id).with_for_update())


def count_slots(session: Session, job_id: uuid.UUID, statuses: Sequence[str]) -> int:
    stmt = select(func.count()).where(TrialSlot.job_id == job_id, TrialSlot.status.in_(statuses))
    return int(session.scalar(stmt) or 0)


def slot_counts(session: Session, job_id: uuid.UUID) -> dict[str, int]:
    stmt = (
        select(TrialSlot.status, func.count())
        .where(TrialSlot.job_id == job_id)
        .group_by(TrialSlot.status)
    )
    return {status: int(n) for status, n in session.execute(stmt)}


def queued_slots(session: Session, job_id: uuid.UUID, limit: int) -> list[TrialSlot]:
    """Queued slots in order; slots past ``n_trials`` (a compare job's confirmation reruns)
    only once every slot before them has ended, as they rerun those slots' best result."""
    n_trials = select(Job.n_trials).where(Job.id == job_id).scalar_subquery()
    open_statuses = [s for s in SlotStatus if s not in TERMINAL_SLOT_STATUSES]
    tuning_open = (
        select(func.count())
        .where(
            TrialSlot.job_id == job_id,
            TrialSlot.slot < n_trials,
            TrialSlot.status.in_(open_statuses),
        )
        .scalar_subquery()
    )
    stmt = (
        select(TrialSlot)
        .where(
            TrialSlot.job_id == job_id,
            TrialSlot.status == SlotStatus.QUEUED,
            (TrialSlot.slot < n_trials) | (tuning_open == 0),
        )
        .order_by(TrialSlot.slot)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def set_slot_status(
    session: Session,
    job_id: uuid.UUID,
    slot: int,
    status: SlotStatus,
    *,
    expect: Sequence[str],
    attempt: int | None = None,
) -> bool:
    """Move a slot to ``status`` only from one of ``expect`` (and the given attempt)."""
    stmt = update(TrialSlot).where(
        TrialSlot.job_id == job_id, TrialSlot.slot == slot, TrialSlot.status.in_(expect)
    )
    if attempt is not None:
        stmt = stmt.where(TrialSlot.attempts == attempt)
    values: dict[str, object] = {"status": status}
    if status == SlotStatus.DISPATCHED:
        values["dispatched_at"] = utcnow()
    return session.execute(stmt.values(**values)).rowcount == 1  # type: ignore[attr-defined]


def claim_slot(session: Session, job_id: uuid.UUID, slot: int, worker: str) -> int | None:
    """Claim a dispatched slot for this worker; the attempt number, or None if taken."""
    stmt = (
        update(TrialSlot)
        .where(
            TrialSlot.job_id == job_id,
            TrialSlot.slot == slot,
            TrialSlot.status == SlotStatus.DISPATCHED,
            TrialSlot.attempts < TrialSlot.max_attempts,
        )
        .values(
            status=SlotStatus.RUNNING,
            attempts=TrialSlot.attempts + 1,
            heartbeat_at=utcnow(),
            worker=worker,
        )
    )
    if session.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        return None
    return int(
        session.scalar(
            select(TrialSlot.attempts).where(TrialSlot.job_id == job_id, TrialSlot.slot == slot)
        )
        or 0
    )


def beat(session: Session, job_id: uuid.UUID, slot: int, attempt: int) -> bool:
    stmt = (
        update(TrialSlot)
        .where(
            TrialSlot.job_id == job_id,
            TrialSlot.slot == slot,
            TrialSlot.attempts == attempt,
            TrialSlot.status == SlotStatus.RUNNING,
        )
        .values(heartbeat_at=utcnow())
    )
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


def stale_running_slots(session: Session, older_than: dt.datetime) -> list[TrialSlot]:
    stmt = (
        select(TrialSlot)
        .where(TrialSlot.status == SlotStatus.RUNNING, TrialSlot.heartbeat_at < older_than)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def unclaimed_dispatched_slots(session: Session, older_than: dt.datetime) -> list[TrialSlot]:
    stmt = (
        select(TrialSlot)
        .where(TrialSlot.status == SlotStatus.DISPATCHED, TrialSlot.dispatched_at < older_than)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def cancel_pending_slots(session: Session, job_id: uuid.UUID) -> int:
    stmt = (
        update(TrialSlot)
        .where(
            TrialSlot.job_id == job_id,
            TrialSlot.status.in_([SlotStatus.QUEUED, SlotStatus.DISPATCHED]),
        )
        .values(status=SlotStatus.CANCELLED)
    )
    return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def all_slots_terminal(session: Session, job_id: uuid.UUID) -> bool:
    open_statuses = [s for s in SlotStatus if s not in TERMINAL_SLOT_STATUSES]
    return count_slots(session, job_id, open_statuses) == 0


def active_slot_count(session: Session, job_id: uuid.UUID) -> int:
    return count_slots(session, job_id, ACTIVE_SLOT_STATUSES)


# -- runs ------------------------------------------------------------------------------
def get_run(session: Session, job_id: uuid.UUID, slot: int, attempt: int) -> TrialRun | None:
    return session.scalar(
        select(TrialRun).where(
            TrialRun.job_id == job_id, TrialRun.slot == slot, TrialRun.attempt == attempt
        )
    )


def finish_run(
    session: Session,
    run_id: uuid.UUID,
    state: TrialState,
    *,
    value: float | None = None,
    reason: str | None = None,
    diverged: bool = False,
) -> bool:
    """Write a run's terminal state once; a second writer (zombie) changes nothing."""
    stmt = (
        update(TrialRun)
        .where(TrialRun.id == run_id, TrialRun.state == TrialState.RUNNING)
        .values(
            state=state,
            value=value,
            failure_reason=reason,
            diverged=diverged,
            finished_at=utcnow(),
        )
    )
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


def run_state_counts(session: Session, job_id: uuid.UUID) -> dict[str, int]:
    stmt = (
        select(TrialRun.state, func.count())
        .where(TrialRun.job_id == job_id)
        .group_by(TrialRun.state)
    )
    return {state: int(n) for state, n in session.execute(stmt)}


def list_runs(
    session: Session, job_id: uuid.UUID, *, limit: int, offset: int, state: str | None = None
) -> tuple[list[TrialRun], int]:
    where = [TrialRun.job_id == job_id]
    if state is not None:
        where.append(TrialRun.state == state)
    total = int(session.scalar(select(func.count()).select_from(TrialRun).where(*where)) or 0)
    rows = session.scalars(
        select(TrialRun).where(*where).order_by(TrialRun.number).limit(limit).offset(offset)
    )
    return list(rows), total


def get_run_by_number(session: Session, job_id: uuid.UUID, number: int) -> TrialRun | None:
    return session.scalar(
        select(TrialRun).where(TrialRun.job_id == job_id, TrialRun.number == number)
    )


def completed_runs(session: Session, job_id: uuid.UUID) -> list[TrialRun]:
    stmt = select(TrialRun).where(
        TrialRun.job_id == job_id,
        TrialRun.state == TrialState.COMPLETE,
        TrialRun.value.is_not(None),
    )
    return list(session.scalars(stmt))


def best_run(
    session: Session, job_id: uuid.UUID, *, optimizer: str, maximize: bool, below_slot: int
) -> TrialRun | None:
    """The best COMPLETE run of ``optimizer`` among the job's first ``below_slot`` slots."""
    order = TrialRun.value.desc() if maximize else TrialRun.value.asc()
    stmt = (
        select(TrialRun)
        .where(
            TrialRun.job_id == job_id,
            TrialRun.optimizer == optimizer,
            TrialRun.slot < below_slot,
            TrialRun.state == TrialState.COMPLETE,
            TrialRun.value.is_not(None),
        )
        .order_by(order, TrialRun.number)
        .limit(1)
    )
    return session.scalar(stmt)


def all_runs(session: Session, job_id: uuid.UUID) -> list[TrialRun]:
    stmt = (
        select(TrialRun).where(TrialRun.job_id == job_id).order_by(TrialRun.slot, TrialRun.attempt)
    )
    return list(session.scalars(stmt))


def last_points(session: Session, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, CurvePoint]:
    """Each run's last curve point (its final metrics), by run id."""
    if not run_ids:
        return {}
    last_epoch = (
        select(CurvePoint.trial_id, func.max(CurvePoint.epoch).label("epoch"))
        .where(CurvePoint.trial_id.in_(run_ids))
        .group_by(CurvePoint.trial_id)
        .subquery()
    )
    stmt = select(CurvePoint).join(
        last_epoch,
        (CurvePoint.trial_id == last_epoch.c.trial_id) & (CurvePoint.epoch == last_epoch.c.epoch),
    )
    return {p.trial_id: p for p in session.scalars(stmt)}


def curve(session: Session, trial_id: uuid.UUID) -> list[CurvePoint]:
    stmt = select(CurvePoint).where(CurvePoint.trial_id == trial_id).order_by(CurvePoint.epoch)
    return list(session.scalars(stmt))


def upsert_curve_point(session: Session, point: CurvePoint) -> None:
    """Idempotent per (trial, epoch): a retried report overwrites, never duplicates."""
    session.merge(point)
