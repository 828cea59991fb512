"""Job domain logic: semantic checks, creation, reads, cancellation.

``api_schemas`` has already checked the shape of the request and its search space
against the optimizer registry; here we check what needs the worker catalogue (the
model, the dataset and their parameters) and turn rows into response models.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from sqlalchemy.orm import Session

from api_schemas import (
    STORED_CONTEXT,
    BestRead,
    CurvePoint,
    CurveRead,
    JobCreate,
    JobRead,
    TrialRead,
)
from api_schemas.jobs import encode_float
from service.auth import AuthSubject
from service.config import get_settings
from service.dispatch import DispatchBuffer
from service.errors import InvalidField, NotFound
from service.jobs import lifecycle
from service.jobs import repository as jobs_repo
from service.models import Job, TrialRun, TrialSlot, TrialState
from service.trials import repository as trials
from workers import catalog

TASK = ("body", "task")


def _check_task(job_in: JobCreate) -> None:
    task = job_in.task
    for kind, ref, validate in (
        ("model", task.model, catalog.validate_model_params),
        ("dataset", task.dataset, catalog.validate_dataset_params),
    ):
        try:
            validate(ref.name, ref.params)
        except catalog.CatalogError as exc:
            loc = (*TASK, kind, "params", exc.field) if exc.field else (*TASK, kind, "name")
            raise InvalidField(str(exc), loc) from None
    try:
        catalog.check_compatible(task.model.name, task.dataset.name)
    except catalog.CatalogError as exc:
        raise InvalidField(str(exc), (*TASK, "dataset", "name")) from None
    metrics = catalog.metrics_for(catalog.get_dataset_spec(task.dataset.name).task_type)
    if task.metric not in metrics:
        raise InvalidField(
            f"metric {task.metric!r} is not reported for dataset {task.dataset.name!r}; "
            f"expected one of {metrics}",
            (*TASK, "metric"),
        )


def _with_default_direction(job_in: JobCreate) -> JobCreate:
    """An omitted ``direction`` follows the metric (accuracy is maximised, losses minimised)."""
    if "direction" in job_in.task.model_fields_set:
        return job_in
    task = job_in.task.model_copy(
        update={"direction": catalog.default_direction(job_in.task.metric)}
    )
    return job_in.model_copy(update={"task": task})


def create(session: Session, subject: AuthSubject, job_in: JobCreate) -> Job:
    _check_task(job_in)
    job_in = _with_default_direction(job_in)
    job_id = uuid.uuid4()
    job = Job(
        id=job_id,
        tenant_id=subject.tenant_id,
        name=job_in.name,
        spec=job_in.model_dump(mode="json"),
        resolved_space=job_in.resolved_space().model_dump(mode="json"),
        n_trials=job_in.n_trials,
        max_parallel=job_in.max_parallel,
        max_failed_trials=job_in.max_failed_trials,
        study_name=f"job-{job_id}",
    )
    session.add(job)
    max_attempts = get_settings().TRIAL_MAX_ATTEMPTS
    session.add_all(
        TrialSlot(job_id=job_id, slot=i, max_attempts=max_attempts) for i in range(job.n_trials)
    )
    session.flush()
    DispatchBuffer.for_session(session).add(job_id)
    return job


def get(session: Session, subject: AuthSubject, job_id: uuid.UUID) -> Job:
    job = jobs_repo.get(session, subject, job_id)
    if job is None:
        raise NotFound("job not found", ("path", "job_id"))
    return job


def cancel(session: Session, subject: AuthSubject, job_id: uuid.UUID) -> Job:
    job = get(session, subject, job_id)
    lifecycle.request_cancel(session, job.id)
    session.flush()
    return job


def best(session: Session, job: Job) -> BestRead | None:
    runs = [r for r in trials.completed_runs(session, job.id) if r.value is not None]
    finite = [r for r in runs if math.isfinite(r.value or 0.0)] or runs
    if not finite:
        return None
    maximize = job.spec["task"].get("direction") == "maximize"
    top = (max if maximize else min)(finite, key=lambda r: (r.value, -r.number))
    value, kind = encode_float(top.value)
    return BestRead(
        value=value,
        value_kind=kind,
        trial=top.number,
        optimizer=top.optimizer or "",
        params=top.params,
        hyperparameters=top.hyperparameters,
    )


def to_read(session: Session, job: Job) -> JobRead:
    counts = {state.value: 0 for state in TrialState}
    counts.update(trials.run_state_counts(session, job.id))
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    return JobRead(
        id=job.id,
        name=job.name,
        status=job.status,
        spec=JobCreate.model_validate(job.spec, context=STORED_CONTEXT),
        resolved_space=job.resolved_space,
        counts=counts,
        n_finished=finished,
        best=best(session, job),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
    )


def trial_read(run: TrialRun) -> TrialRead:
    value, kind = encode_float(run.value)
    duration = None
    if run.started_at and run.finished_at:
        duration = (run.finished_at - run.started_at).total_seconds()
    return TrialRead(
        number=run.number,
        state=run.state,
        optimizer=run.optimizer,
        params=run.params,
        hyperparameters=run.hyperparameters,
        value=value,
        value_kind=kind,
        duration_s=duration,
        started_at=run.started_at,
        finished_at=run.finished_at,
        failure_reason=run.failure_reason,
        attempt=run.attempt,
        seed=run.seed,
        device=run.device,
        diverged=run.diverged,
    )


def curve(session: Session, job: Job, number: int) -> CurveRead:
    run = trials.get_run_by_number(session, job.id, number)
    if run is None:
        raise NotFound(f"trial {number} not found", ("path", "number"))
    points: list[dict[str, Any]] = [
        {
            "epoch": p.epoch,
            "step": p.step,
            "wall_time": p.wall_time,
            "train_loss": p.train_loss,
            "val_loss": p.val_loss,
            "val_metric": p.val_metric,
            "metrics": p.metrics,
        }
        for p in trials.curve(session, run.id)
    ]
    return CurveRead(
        job_id=job.id,
        trial=number,
        metric=job.spec["task"].get("metric", "val_loss"),
        points=[CurvePoint(**p) for p in points],
    )
