"""Run a seed suite: through a running API, or inline in this process.

* **Through the API** (``--url``): each job is submitted with an idempotency key and
  the command waits for the stack's workers; nothing here trains.
* **Inline**: the same service code a request and a worker run, in this process. The
  job is created by ``service.jobs.service.submit`` (same checks, slots and idempotency
  key as ``POST /v1/jobs``), then each slot is reserved by ``service.dispatch`` and run
  by the worker's own ``workers.trial_runner.run_trial``: claim, Optuna ask, train,
  tell, record, curves. Messages that ``dispatch`` publishes go to a private in-memory
  broker (``memory://``) that ends with the process, so no message is left behind for
  a real worker; and because a slot is claimed by a conditional UPDATE, a slot that a
  real worker (fed by a reconciler sharing the database) claims first is not run twice:
  ``run_trial`` answers "already claimed" and the loop waits for that worker instead.

Either way each seeded job ends with ``jobs.fingerprint`` set, and ``shared`` when
asked, so every tenant's recommendations can use it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api_schemas import JobCreate
from service.auth import AuthSubject
from service.client import Client
from service.db import session_scope
from service.history.suite import SeedTask, Suite
from service.models import Job, SlotStatus, TrialSlot
from service.models._types import utcnow
from service.models.job import TERMINAL_JOB_STATUSES

PRIVATE_BROKER = "memory://"
_SEEDER_KEY = uuid.UUID(int=0)
"""Inline jobs are created by the installation itself, not through an API key."""
_IDLE_S = 0.5


@dataclass(frozen=True)
class SeedResult:
    task: str
    job_id: uuid.UUID
    status: str
    created: bool | None  # None: submitted through the API, which does not say


Progress = Callable[[SeedResult], None]


def ensure_fingerprints(session: Session, job_ids: Sequence[uuid.UUID]) -> int:
    """Set ``jobs.fingerprint`` where it is missing; returns how many were set."""
    from service.recommend.fingerprint import fingerprint_for_spec

    jobs = session.scalars(select(Job).where(Job.id.in_(list(job_ids)), Job.fingerprint.is_(None)))
    count = 0
    for job in jobs:
        job.fingerprint = fingerprint_for_spec(session, job.tenant_id, job.spec)
        count += 1
    return count


def set_shared(session: Session, job_ids: Sequence[uuid.UUID], shared: bool) -> int:
    """Mark the jobs (not) shared; returns how many of them this database holds."""
    stmt = update(Job).where(Job.id.in_(list(job_ids))).values(shared=shared)
    return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


# -- inline -------------------------------------------------------------------------------
@contextlib.contextmanager
def private_broker() -> Iterator[None]:
    """Publish to an in-process broker for the duration (see the module docstring)."""
    from service.broker import get_celery
    from service.config import get_settings

    previous = os.environ.get("OPTSERVE_BROKER_URL")
    os.environ["OPTSERVE_BROKER_URL"] = PRIVATE_BROKER
    get_settings.cache_clear()
    get_celery.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OPTSERVE_BROKER_URL", None)
        else:
            os.environ["OPTSERVE_BROKER_URL"] = previous
        get_settings.cache_clear()
        get_celery.cache_clear()


def run_inline(
    suite: Suite, *, tenant: str, share: bool, on_job: Progress | None = None
) -> list[SeedResult]:
    """Create (or find) each job of the suite for ``tenant`` and run its trials here."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per job is enough
    results = []
    with private_broker(), warnings.catch_warnings():
        # TPE's ``group`` option is flagged experimental at every trial
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for task in suite.tasks:
            job_id, created = _submit_inline(suite, task, tenant)
            status = _run_slots(job_id)
            with session_scope() as session:
                ensure_fingerprints(session, [job_id])
                if share:
                    set_shared(session, [job_id], True)
            result = SeedResult(task.key, job_id, status, created)
            if on_job is not None:
                on_job(result)
            results.append(result)
    return results


def _submit_inline(suite: Suite, task: SeedTask, tenant: str) -> tuple[uuid.UUID, bool]:
    """``POST /v1/jobs`` without HTTP; its dispatch buffer is never flushed (the loop
    in ``_run_slots`` dispatches)."""
    from service.jobs import service as job_service
    from service.tenants.service import get_or_create_tenant

    with session_scope() as session:
        owner = get_or_create_tenant(session, tenant)
        subject = AuthSubject(owner.id, _SEEDER_KEY, frozenset({"jobs:read", "jobs:write"}))
        job_in = JobCreate.model_validate(suite.job_body(task))
        job, created = job_service.submit(session, subject, job_in, suite.idempotency_key(task))
        ensure_fingerprints(session, [job.id])
        return job.id, created


def _run_slots(job_id: uuid.UUID) -> str:
    """Run the job's slots one by one until it ends; returns its final status."""
    from service.dispatch import dispatch
    from workers.reconcile import reap_stale_runs
    from workers.trial_runner import run_trial

    worker = f"seed-history@{socket.gethostname()}-{os.getpid()}"
    while True:
        status = _refresh(job_id)
        if status in TERMINAL_JOB_STATUSES:
            return status
        dispatch([job_id])
        slots = _dispatched(job_id)
        for slot in slots:
            run_trial(str(job_id), slot, worker)
        if not slots:  # another process holds a slot: wait for it (or reap it if lost)
            reap_stale_runs(utcnow())
            time.sleep(_IDLE_S)


def _refresh(job_id: uuid.UUID) -> str:
    from service.jobs import lifecycle

    with session_scope() as session:
        return lifecycle.refresh_status(session, job_id) or "missing"


def _dispatched(job_id: uuid.UUID) -> list[int]:
    with session_scope() as session:
        stmt = (
            select(TrialSlot.slot)
            .where(TrialSlot.job_id == job_id, TrialSlot.status == SlotStatus.DISPATCHED)
            .order_by(TrialSlot.slot)
        )
        return list(session.scalars(stmt))


# -- through the API ----------------------------------------------------------------------
def run_via_api(
    suite: Suite,
    client: Client,
    *,
    poll_s: float = 2.0,
    on_job: Progress | None = None,
) -> list[SeedResult]:
    """Submit every job (idempotently), then wait for each; the stack's workers train."""
    submitted = []
    for task in suite.tasks:
        job = client.submit(suite.job_body(task), idempotency_key=suite.idempotency_key(task))
        submitted.append((task.key, job.id))
    results = []
    for key, job_id in submitted:
        job = client.wait(job_id, progress=False, poll_s=poll_s)
        result = SeedResult(key, job_id, job.status, None)
        if on_job is not None:
            on_job(result)
        results.append(result)
    return results


__all__ = [
    "PRIVATE_BROKER",
    "SeedResult",
    "ensure_fingerprints",
    "private_broker",
    "run_inline",
    "run_via_api",
    "set_shared",
]
