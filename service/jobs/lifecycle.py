"""Job state transitions, shared by the API, the workers and the reconciler.

``queued → running → completed | failed | cancelled``. A job is finished when every
slot is terminal; it fails early when more slots failed than ``max_failed_trials``.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from service.models import JobStatus, SlotStatus
from service.models._types import utcnow
from service.models.job import TERMINAL_JOB_STATUSES
from service.trials import repository as trials


def mark_running(session: Session, job_id: uuid.UUID) -> None:
    job = trials.lock_job(session, job_id)
    if job is not None and job.status == JobStatus.QUEUED:
        job.status = JobStatus.RUNNING
        job.started_at = utcnow()


def refresh_status(session: Session, job_id: uuid.UUID) -> str | None:
    """Finish the job if its slots say so; returns the (possibly new) status."""
    job = trials.lock_job(session, job_id)
    if job is None:
        return None
    if job.status in TERMINAL_JOB_STATUSES:
        return job.status
    counts = trials.slot_counts(session, job_id)
    failed = counts.get(SlotStatus.FAILED, 0)
    if job.max_failed_trials is not None and failed > job.max_failed_trials:
        trials.cancel_pending_slots(session, job_id)
        _finish(
            job,
            JobStatus.FAILED,
            f"{failed} trials failed (max_failed_trials={job.max_failed_trials})",
        )
    elif job.cancel_requested:
        trials.cancel_pending_slots(session, job_id)
        if trials.all_slots_terminal(session, job_id):
            _finish(job, JobStatus.CANCELLED)
    elif trials.all_slots_terminal(session, job_id):
        if counts.get(SlotStatus.DONE, 0) == 0:
            _finish(job, JobStatus.FAILED, "every trial failed")
        else:
            _finish(job, JobStatus.COMPLETED)
    return job.status


def _finish(job: object, status: JobStatus, error: str | None = None) -> None:
    job.status = status  # type: ignore[attr-defined]
    job.error = error  # type: ignore[attr-defined]
    job.finished_at = utcnow()  # type: ignore[attr-defined]


def request_cancel(session: Session, job_id: uuid.UUID) -> None:
    job = trials.lock_job(session, job_id)
    if job is None or job.status in TERMINAL_JOB_STATUSES:
        return
    job.cancel_requested = True
    trials.cancel_pending_slots(session, job_id)
    refresh_status(session, job_id)
