"""``/v1/jobs``: submit, list, read, update, cancel; trials, curves and the best configuration."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api_schemas import BestRead, CurveRead, JobCreate, JobRead, Page, TrialRead
from api_schemas.jobs import ComparisonRead, JobUpdate, ParetoRead, SensitivityRead
from api_schemas.trials import ImportanceMethod, ImportanceRead, TrialCurve
from service.auth import Authenticated
from service.deps import SessionDep
from service.errors import NotFound
from service.jobs import repository as jobs_repo
from service.jobs import service as job_service
from service.trials import repository as trials

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]
METRIC_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*$"
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def submit_job(
    job_in: JobCreate,
    session: SessionDep,
    subject: Authenticated,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobRead:
    """Validate and store a tuning job; its trials are queued once it is committed.

    With an ``Idempotency-Key`` header, a retry of the same body returns the job
    created first (200); the same key with another body is a 409.
    """
    subject.require("jobs:write")
    job, created = job_service.submit(session, subject, job_in, idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return job_service.to_read(session, job)


@router.get("")
def list_jobs(
    session: SessionDep,
    subject: Authenticated,
    limit: Limit = 50,
    offset: Offset = 0,
    job_status: Annotated[str | None, Query(alias="status")] = None,
) -> Page[JobRead]:
    """The caller's jobs, newest first."""
    rows, total = jobs_repo.list_page(
        session, subject, limit=limit, offset=offset, status=job_status
    )
    items = job_service.to_reads(session, rows)
    return Page[JobRead](items=items, total=total, limit=limit, offset=offset)


@router.get("/{job_id}")
def read_job(job_id: uuid.UUID, session: SessionDep, subject: Authenticated) -> JobRead:
    """Status, counts per trial state, best so far, timestamps."""
    return job_service.to_read(session, job_service.get(session, subject, job_id))


@router.patch("/{job_id}")
def update_job(
    job_id: uuid.UUID, patch: JobUpdate, session: SessionDep, subject: Authenticated
) -> JobRead:
    """Raise ``n_trials`` or change ``max_parallel`` of a job that has not ended."""
    subject.require("jobs:write")
    job = job_service.update(session, subject, job_id, patch)
    return job_service.to_read(session, job)


@router.post("/{job_id}/cancel")
def cancel_job(job_id: uuid.UUID, session: SessionDep, subject: Authenticated) -> JobRead:
    """Stop queued trials from starting; running ones stop at their next epoch."""
    subject.require("jobs:write")
    job = job_service.cancel(session, subject, job_id)
    return job_service.to_read(session, job)


@router.get("/{job_id}/trials")
def list_trials(
    job_id: uuid.UUID,
    session: SessionDep,
    subject: Authenticated,
    limit: Limit = 100,
    offset: Offset = 0,
    state: str | None = None,
) -> Page[TrialRead]:
    """Every attempt, in Optuna trial-number order (a retried slot shows both runs)."""
    job = job_service.get(session, subject, job_id)
    rows, total = trials.list_runs(session, job.id, limit=limit, offset=offset, state=state)
    items = [job_service.trial_read(r) for r in rows]
    return Page[TrialRead](items=items, total=total, limit=limit, offset=offset)


@router.get("/{job_id}/trials/{number}/curve")
def trial_curve(
    job_id: uuid.UUID, number: int, session: SessionDep, subject: Authenticated
) -> CurveRead:
    """Per-epoch train loss, validation loss, objective metric and wall time."""
    return job_service.curve(session, job_service.get(session, subject, job_id), number)


@router.get("/{job_id}/curves")
def trial_curves(
    job_id: uuid.UUID,
    session: SessionDep,
    subject: Authenticated,
    limit: Limit = 100,
    offset: Offset = 0,
    metric: Annotated[str | None, Query(pattern=METRIC_PATTERN, max_length=64)] = None,
) -> Page[TrialCurve]:
    """Many trials' curves at once, in trial-number order (a constant number of queries
    per page); ``metric`` keeps only that metric in each point's ``metrics``."""
    job = job_service.get(session, subject, job_id)
    return job_service.curves(session, job, limit=limit, offset=offset, metric=metric)


@router.get("/{job_id}/importance")
def param_importance(
    job_id: uuid.UUID,
    session: SessionDep,
    subject: Authenticated,
    method: ImportanceMethod = "ped_anova",
    optimizer: Annotated[str | None, Query(max_length=64)] = None,
) -> ImportanceRead:
    """How much each parameter explains the objective over the completed trials (Optuna's
    PED-ANOVA or fANOVA); ``optimizer`` restricts it to that optimizer's trials and
    hyperparameters. Too few completed trials: empty ``importances``, never an error."""
    job = job_service.get(session, subject, job_id)
    return job_service.param_importance(session, job, method=method, optimizer=optimizer)


@router.get("/{job_id}/best")
def best_configuration(job_id: uuid.UUID, session: SessionDep, subject: Authenticated) -> BestRead:
    """The best completed trial: value, Optuna params and constructor hyperparameters."""
    best = job_service.best(session, job_service.get(session, subject, job_id))
    if best is None:
        raise NotFound("no completed trial yet", ("path", "job_id"))
    return best


@router.get("/{job_id}/pareto")
def pareto_front(job_id: uuid.UUID, session: SessionDep, subject: Authenticated) -> ParetoRead:
    """The non-dominated completed trials over the job's objectives (its best, with one)."""
    return job_service.pareto(session, job_service.get(session, subject, job_id))


@router.get("/{job_id}/comparison")
def optimizer_comparison(
    job_id: uuid.UUID,
    session: SessionDep,
    subject: Authenticated,
    target: Annotated[float | None, Query(allow_inf_nan=False)] = None,
) -> ComparisonRead:
    """A compare job's optimizers, best first: equal tuning budgets, confirmation reruns,
    expected best value per budget, and time to ``target`` (the job's, else this one)."""
    job = job_service.get(session, subject, job_id)
    return job_service.comparison(session, job, target)


@router.get("/{job_id}/sensitivity")
def lr_sensitivity(
    job_id: uuid.UUID, session: SessionDep, subject: Authenticated
) -> SensitivityRead:
    """A sweep job's final metric against learning rate, per optimizer (one value per seed)."""
    return job_service.sensitivity(session, job_service.get(session, subject, job_id))
