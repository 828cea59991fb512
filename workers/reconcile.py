"""The reconciler: the loop that makes the database's view of the world come true.

It runs as its own small process (``optserve reconciler``; ``optserve up`` starts one)
and, every ``RECONCILE_INTERVAL_S``:

1. reaps runs whose worker died (stale heartbeat): the run and its Optuna trial are
   failed with the reason, the slot is queued again or, after ``max_attempts``,
   failed for good (no redelivery loop);
2. publishes again the slots whose message was never claimed (broker restarted
   without persistence, publish lost);
3. dispatches queued slots and finishes jobs whose slots are all terminal.

Every step is a conditional update, so two reconcilers at once do no harm.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import uuid

import optuna
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.broker import publish_trial
from service.config import get_settings
from service.db import session_scope
from service.dispatch import dispatch
from service.events import recorder
from service.jobs import lifecycle
from service.models import Job, SlotStatus, TrialSlot, TrialState
from service.models._types import utcnow
from service.models.job import TERMINAL_JOB_STATUSES
from service.trials import repository as trials
from workers.optuna_storage import get_storage, study_name

log = logging.getLogger(__name__)


def reap_stale_runs(now: dt.datetime) -> set[uuid.UUID]:
    grace = get_settings().HEARTBEAT_GRACE_S
    touched: set[uuid.UUID] = set()
    cutoff = now - dt.timedelta(seconds=grace)
    with session_scope() as session:
        # the jobs first, then their slots and runs: the lock order of every writer
        locked = {j for j in _stale_job_ids(session, cutoff) if trials.lock_job(session, j)}
        for slot in trials.stale_running_slots(session, cutoff):
            if slot.job_id not in locked:
                continue  # went stale after the jobs were locked: the next pass reaps it
            reason = (
                f"worker lost: no heartbeat for {grace:g}s "
                f"(attempt {slot.attempts} of {slot.max_attempts})"
            )
            run = trials.get_run(session, slot.job_id, slot.slot, slot.attempts)
            if run is not None and trials.finish_run(
                session, run.id, TrialState.FAIL, reason=reason
            ):
                _fail_optuna_trial(slot.job_id, run.number)
                recorder.trial_finished(session, run)
            retry = slot.attempts < slot.max_attempts
            trials.set_slot_status(
                session,
                slot.job_id,
                slot.slot,
                SlotStatus.QUEUED if retry else SlotStatus.FAILED,
                expect=[SlotStatus.RUNNING],
                attempt=slot.attempts,
            )
            log.warning(
                "job %s slot %s: %s; %s",
                slot.job_id,
                slot.slot,
                reason,
                "retrying" if retry else "giving up",
            )
            touched.add(slot.job_id)
    return touched


def _stale_job_ids(session: Session, older_than: dt.datetime) -> list[uuid.UUID]:
    """Jobs with a stale running slot, sorted so that two reconcilers lock them in turn."""
    stmt = select(TrialSlot.job_id).where(
        TrialSlot.status == SlotStatus.RUNNING, TrialSlot.heartbeat_at < older_than
    )
    return sorted(set(session.scalars(stmt)))


def _fail_optuna_trial(job_id: uuid.UUID, number: int) -> None:
    storage = get_storage()
    try:
        study_id = storage.get_study_id_from_name(study_name(str(job_id)))
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    except Exception as exc:  # already finished (the worker told it first), or gone
        log.info("optuna trial %s of job %s not failed: %s", number, job_id, exc)


def republish_unclaimed(now: dt.datetime) -> int:
    older = now - dt.timedelta(seconds=get_settings().DISPATCH_REPUBLISH_S)
    with session_scope() as session:
        stale = [(s.job_id, s.slot) for s in trials.unclaimed_dispatched_slots(session, older)]
        for job_id, slot in stale:
            trials.set_slot_status(
                session, job_id, slot, SlotStatus.DISPATCHED, expect=[SlotStatus.DISPATCHED]
            )
    for job_id, slot in stale:
        try:
            publish_trial(str(job_id), slot)
        except Exception as exc:
            log.warning("republish of job %s slot %s failed: %s", job_id, slot, exc)
    return len(stale)


def open_job_ids() -> list[uuid.UUID]:
    with session_scope() as session:
        return list(session.scalars(select(Job.id).where(Job.status.not_in(TERMINAL_JOB_STATUSES))))


def reconcile_once(now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    reap_stale_runs(now)
    republish_unclaimed(now)
    job_ids = open_job_ids()
    for job_id in job_ids:
        with session_scope() as session:
            lifecycle.refresh_status(session, job_id)
    dispatch(job_ids)


def run_forever() -> None:
    """Reconcile every interval until SIGINT or SIGTERM; a failed pass is logged, not fatal."""
    interval = get_settings().RECONCILE_INTERVAL_S
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        try:
            reconcile_once()
        except Exception:
            log.exception("reconcile pass failed; next pass in %ss", interval)
        stop.wait(interval)
