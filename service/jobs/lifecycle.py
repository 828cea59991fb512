"""Job state transitions, shared by the API, the workers and the reconciler.

``queued → running → completed | failed | cancelled``. A job is finished when every
slot is terminal; it fails early when more slots failed than ``max_failed_trials``.

A budget (``timeout``, ``target``) *stops* a job: ``stop_reason`` is set, queued slots
are cancelled, running trials stop at their next epoch boundary, and once every slot is
terminal the job is ``completed`` (``failed`` if no trial finished) with the reason in
``error``. The reconciler's periodic ``refresh_status`` notices an expired ``timeout``
even when no worker is running a trial of the job.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from service.events import recorder
from service.models import Job, JobStatus, SlotStatus
from service.models._types import utcnow
from service.models.job import TERMINAL_JOB_STATUSES
from service.trials import repository as trials


def mark_running(session: Session, job_id: uuid.UUID) -> None:
    job = trials.lock_job(session, job_id)
    if job is not None and job.status == JobStatus.QUEUED:
        job.status = JobStatus.RUNNING
        job.started_at = utcnow()
        recorder.emit(session, job_id, "job.started", {})


def refresh_status(session: Session, job_id: uuid.UUID) -> str | None:
    """Finish the job if its slots say so; returns the (possibly new) status."""
    job = trials.lock_job(session, job_id)
    if job is None:
        return None
    if job.status in TERMINAL_JOB_STATUSES:
        return job.status
    if job.stop_reason is None and (reason := timeout_reason(job)) is not None:
        job.stop_reason = reason
    counts = trials.slot_counts(session, job_id)
    failed = counts.get(SlotStatus.FAILED, 0)
    if job.max_failed_trials is not None and failed > job.max_failed_trials:
        trials.cancel_pending_slots(session, job_id)
        _finish(
            session,
            job,
            JobStatus.FAILED,
            f"{failed} trials failed (max_failed_trials={job.max_failed_trials})",
        )
    elif job.cancel_requested:
        trials.cancel_pending_slots(session, job_id)
        if trials.all_slots_terminal(session, job_id):
            _finish(session, job, JobStatus.CANCELLED)
    elif job.stop_reason is not None:
        trials.cancel_pending_slots(session, job_id)
        if trials.all_slots_terminal(session, job_id):
            done = trials.count_slots(session, job_id, [SlotStatus.DONE]) > 0
            _finish(
                session, job, JobStatus.COMPLETED if done else JobStatus.FAILED, job.stop_reason
            )
    elif trials.all_slots_terminal(session, job_id):
        if counts.get(SlotStatus.DONE, 0) == 0:
            _finish(session, job, JobStatus.FAILED, "every trial failed")
        else:
            _finish(session, job, JobStatus.COMPLETED)
    return job.status


def objectives(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(metric, direction) of each objective: the job's ``objectives``, else the task's one."""
    if spec.get("objectives"):
        return [(o["metric"], o["direction"]) for o in spec["objectives"]]
    task = spec["task"]
    return [(task.get("metric", "val_loss"), task.get("direction", "minimize"))]


def _aware(t: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they are UTC
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def timeout_reason(job: Job, now: dt.datetime | None = None) -> str | None:
    """Why the job must stop for its wall clock, or None while within ``timeout``."""
    timeout = (job.spec or {}).get("timeout")
    if timeout is None or job.started_at is None:
        return None
    elapsed = ((now or utcnow()) - _aware(job.started_at)).total_seconds()
    if elapsed < timeout:
        return None
    return f"timeout: the job's wall clock of {timeout:g}s ran out"


def stopping(job: Job | None) -> bool:
    """Whether a trial of this job must stop (or not start): ended, cancelled or stopped."""
    return (
        job is None
        or job.status in TERMINAL_JOB_STATUSES
        or job.cancel_requested
        or job.stop_reason is not None
        or timeout_reason(job) is not None
    )


def request_stop(session: Session, job_id: uuid.UUID, reason: str) -> None:
    """End the job early for a budget (see the module docstring); the first reason wins."""
    job = trials.lock_job(session, job_id)
    if job is None or job.status in TERMINAL_JOB_STATUSES or job.stop_reason is not None:
        return
    job.stop_reason = reason
    refresh_status(session, job_id)


def _finish(session: Session, job: Job, status: JobStatus, error: str | None = None) -> None:
    # imported here: the job service imports this module
    from service.jobs.service import best

    job.status = status
    job.error = error
    job.finished_at = utcnow()
    top = best(session, job)
    payload = {"status": status.value, "error": error, "best_value": top.value if top else None}
    recorder.emit(session, job.id, "job.finished", payload)


def request_cancel(session: Session, job_id: uuid.UUID) -> None:
    job = trials.lock_job(session, job_id)
    if job is not None:  # the caller may have read the row before the lock: read it again
        session.refresh(job)
    if job is None or job.status in TERMINAL_JOB_STATUSES:
        return
    if not job.cancel_requested:
        recorder.emit(session, job_id, "job.cancel_requested", {})
    job.cancel_requested = True
    trials.cancel_pending_slots(session, job_id)
    refresh_status(session, job_id)
