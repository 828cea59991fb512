"""Every query on trial slots, runs and curves (Polar rule: queries live in repositories).

Workers and the reconciler write through these functions; the API reads through them.
State changes are conditional UPDATEs so that a late or duplicate writer (a zombie
worker, a second reconciler) changes nothing.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, case, func, select, update
from sqlalchemy.orm import Session

from service.models import CurvePoint, Job, SlotStatus, TrialRun, TrialSlot, TrialState
from service.models._types import utcnow
from service.models.trial import ACTIVE_SLOT_STATUSES, TERMINAL_SLOT_STATUSES


def lock_job(session: Session, job_id: uuid.UUID) -> Job | None:
    """The job row, locked on PostgreSQL so that dispatchers of one job take turns.

    ``populate_existing``: a ``Job`` this session loaded before the lock is refreshed
    from the locked row, so the caller never judges a stale copy.
    """
    stmt = select(Job).where(Job.id == job_id).with_for_update()
    return session.scalar(stmt.execution_options(populate_existing=True))


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


def run_state_counts_by_job(
    session: Session, job_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Runs per state of several jobs in one GROUP BY (a page of jobs costs one query)."""
    if not job_ids:
        return {}
    stmt = (
        select(TrialRun.job_id, TrialRun.state, func.count())
        .where(TrialRun.job_id.in_(job_ids))
        .group_by(TrialRun.job_id, TrialRun.state)
    )
    counts: dict[uuid.UUID, dict[str, int]] = {}
    for job_id, state, n in session.execute(stmt):
        counts.setdefault(job_id, {})[state] = int(n)
    return counts


def _best_order(maximize_ids: Collection[uuid.UUID]) -> tuple[ColumnElement[Any], ...]:
    """Best first: finite values before non-finite ones, then the value in the job's
    direction (negated where it maximises), then the earliest trial."""
    finite = TrialRun.value.between(-sys.float_info.max, sys.float_info.max)
    signed = case((TrialRun.job_id.in_(maximize_ids), -TrialRun.value), else_=TrialRun.value)
    return (case((finite, 0), else_=1), signed, TrialRun.number)


def _completed_with_value(job_ids: Collection[uuid.UUID]) -> list[ColumnElement[bool]]:
    return [
        TrialRun.job_id.in_(job_ids),
        TrialRun.state == TrialState.COMPLETE,
        TrialRun.value.is_not(None),
    ]


def best_completed_run(
    session: Session,
    job_id: uuid.UUID,
    *,
    maximize: bool,
    optimizer: str | None = None,
    below_slot: int | None = None,
) -> TrialRun | None:
    """The job's best COMPLETE run, of ``optimizer`` and among the first ``below_slot``
    slots where given: one ordered ``LIMIT 1`` query, whatever the trial count."""
    where = _completed_with_value([job_id])
    if optimizer is not None:
        where.append(TrialRun.optimizer == optimizer)
    if below_slot is not None:
        where.append(TrialRun.slot < below_slot)
    stmt = (
        select(TrialRun).where(*where).order_by(*_best_order([job_id] if maximize else [])).limit(1)
    )
    return session.scalar(stmt)


def best_runs(session: Session, maximize: Mapping[uuid.UUID, bool]) -> dict[uuid.UUID, TrialRun]:
    """The best COMPLETE run of each job (``maximize`` maps job id to its direction), in
    one query: rows ranked per job with a window function, the first of each kept."""
    if not maximize:
        return {}
    maximize_ids = [job_id for job_id, up in maximize.items() if up]
    rank = (
        func.row_number()
        .over(partition_by=TrialRun.job_id, order_by=_best_order(maximize_ids))
        .label("rank")
    )
    ranked = select(TrialRun.id, rank).where(*_completed_with_value(list(maximize))).subquery()
    stmt = select(TrialRun).join(ranked, TrialRun.id == ranked.c.id).where(ranked.c.rank == 1)
    return {run.job_id: run for run in session.scalars(stmt)}


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


def curves(session: Session, trial_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[Row[Any]]]:
    """The curve points of several runs in one query, each run's in epoch order.

    Rows, not ORM objects: a page of curves is thousands of points, read-only.
    """
    out: dict[uuid.UUID, list[Row[Any]]] = {trial_id: [] for trial_id in trial_ids}
    if not trial_ids:
        return out
    stmt = (
        select(*CURVE_COLUMNS)
        .where(CurvePoint.trial_id.in_(trial_ids))
        .order_by(CurvePoint.trial_id, CurvePoint.epoch)
    )
    for point in session.execute(stmt):
        out[point.trial_id].append(point)
    return out


CURVE_COLUMNS = (
    CurvePoint.trial_id,
    CurvePoint.epoch,
    CurvePoint.step,
    CurvePoint.wall_time,
    CurvePoint.train_loss,
    CurvePoint.val_loss,
    CurvePoint.val_metric,
    CurvePoint.metrics,
)


def completed_params(
    session: Session, job_id: uuid.UUID, *, optimizer: str | None = None
) -> list[tuple[dict[str, Any], float]]:
    """``(params, value)`` of the job's COMPLETE runs with a finite value, in trial order
    (columns only: no ORM objects for what may be thousands of rows)."""
    where = [
        *_completed_with_value([job_id]),
        TrialRun.value.between(-sys.float_info.max, sys.float_info.max),
    ]
    if optimizer is not None:
        where.append(TrialRun.optimizer == optimizer)
    stmt = select(TrialRun.params, TrialRun.value).where(*where).order_by(TrialRun.number)
    return [(dict(params), float(value)) for params, value in session.execute(stmt)]


def curve(session: Session, trial_id: uuid.UUID) -> list[CurvePoint]:
    stmt = select(CurvePoint).where(CurvePoint.trial_id == trial_id).order_by(CurvePoint.epoch)
    return list(session.scalars(stmt))


def upsert_curve_point(session: Session, point: CurvePoint) -> None:
    """Idempotent per (trial, epoch): a retried report overwrites, never duplicates."""
    session.merge(point)
