"""Job domain logic: semantic checks, creation, updates, reads, cancellation.

``api_schemas`` has already checked the shape of the request and its search space
against the optimizer registry; here we check what needs the worker catalogue (the
model, the dataset and their parameters) and turn rows into response models.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api_schemas import (
    STORED_CONTEXT,
    BestRead,
    CurvePoint,
    CurveRead,
    JobCreate,
    JobRead,
    Page,
    TrialRead,
)
from api_schemas.jobs import (
    ComparisonRead,
    ExpectedBest,
    JobUpdate,
    Objective,
    OptimizerComparison,
    OptimizerSensitivity,
    ParetoRead,
    ParetoTrial,
    SensitivityPoint,
    SensitivityRead,
    TimeToTarget,
    encode_float,
)
from api_schemas.search_space import (
    OPTIMIZER_PARAM,
    SWEEP_HP,
    ResolvedSpace,
    distribution_name,
    grid_size,
    sweep_point,
)
from api_schemas.trials import ImportanceMethod, ImportanceRead, TrialCurve
from service.auth import AuthSubject
from service.config import get_settings
from service.datasets.service import resolve_dataset_for_job
from service.dispatch import DispatchBuffer
from service.errors import Conflict, InvalidField, NotFound
from service.events import recorder
from service.jobs import comparison as stats
from service.jobs import importance, lifecycle, warm_start
from service.jobs import repository as jobs_repo
from service.models import CurvePoint as CurvePointRow
from service.models import Job, TrialRun, TrialSlot, TrialState
from service.models.job import TERMINAL_JOB_STATUSES
from service.recommend.fingerprint import fingerprint_for_spec
from service.trials import repository as trials
from workers import catalog
from workers.catalog import DatasetSpec

TASK = ("body", "task")


def _catalog_error(exc: catalog.CatalogError, loc: tuple[str | int, ...]) -> InvalidField:
    return InvalidField(str(exc), loc)


def _resolve_dataset(session: Session, subject: AuthSubject, job_in: JobCreate) -> DatasetSpec:
    """The built-in or the caller's uploaded dataset, its parameters checked."""
    ref = job_in.task.dataset
    try:
        spec = resolve_dataset_for_job(session, subject, ref.name)
    except catalog.CatalogError as exc:
        raise _catalog_error(exc, (*TASK, "dataset", "name")) from None
    try:
        catalog.validate_dataset_params(spec, ref.params)
    except catalog.CatalogError as exc:
        loc = (*TASK, "dataset", "params", exc.field) if exc.field else (*TASK, "dataset", "name")
        raise _catalog_error(exc, loc) from None
    return spec


def _check_model(job_in: JobCreate, dataset: DatasetSpec) -> None:
    task = job_in.task
    try:
        catalog.validate_model_params(task.model.name, task.model.params)
    except catalog.CatalogError as exc:
        loc = (*TASK, "model", "params", exc.field) if exc.field else (*TASK, "model", "name")
        raise _catalog_error(exc, loc) from None
    try:
        catalog.check_compatible(task.model.name, dataset)
    except catalog.CatalogError as exc:
        raise _catalog_error(exc, (*TASK, "dataset", "name")) from None
    settings = get_settings()
    try:
        catalog.check_task_limits(
            task.model.name,
            task.model.params,
            dataset,
            task.dataset.params,
            task.epochs,
            max_parameters=settings.MAX_MODEL_PARAMETERS,
            max_epochs=settings.MAX_EPOCHS,
        )
    except catalog.CatalogError as exc:
        field = (*TASK, "epochs") if exc.field == "epochs" else (*TASK, "model", "params")
        raise _catalog_error(exc, field) from None


def _check_metrics(job_in: JobCreate, dataset: DatasetSpec) -> None:
    metrics = catalog.metrics_for(dataset.task_type)
    wanted = [((*TASK, "metric"), job_in.task.metric)]
    wanted += [
        (("body", "objectives", i, "metric"), o.metric)
        for i, o in enumerate(job_in.objectives or [])
    ]
    for loc, metric in wanted:
        if metric not in metrics:
            raise InvalidField(
                f"metric {metric!r} is not reported for dataset {job_in.task.dataset.name!r}; "
                f"expected one of {metrics}",
                loc,
            )


def _check_task(session: Session, subject: AuthSubject, job_in: JobCreate) -> None:
    """What needs the catalogue (and the caller's uploads): model, dataset, sizes, metric."""
    dataset = _resolve_dataset(session, subject, job_in)
    _check_model(job_in, dataset)
    _check_metrics(job_in, dataset)


def _with_default_direction(job_in: JobCreate) -> JobCreate:
    """An omitted ``direction`` follows the metric (accuracy is maximised, losses minimised)."""
    if "direction" in job_in.task.model_fields_set:
        return job_in
    task = job_in.task.model_copy(
        update={"direction": catalog.default_direction(job_in.task.metric)}
    )
    return job_in.model_copy(update={"task": task})


def request_hash(job_in: JobCreate) -> str:
    """SHA-256 of the parsed body: key order and whitespace do not make it "different"."""
    canonical = json.dumps(job_in.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit(
    session: Session, subject: AuthSubject, job_in: JobCreate, idempotency_key: str | None
) -> tuple[Job, bool]:
    """Create the job, or return the one this tenant created with the same key.

    Returns ``(job, created)``. The same key with another body is a 409: the client
    reused a key by mistake, and silently returning the old job would hide it.
    """
    if idempotency_key is None:
        return create(session, subject, job_in), True
    digest = request_hash(job_in)
    existing = jobs_repo.get_by_idempotency_key(session, subject, idempotency_key)
    if existing is None:
        try:
            with session.begin_nested():  # a concurrent twin may win the unique index
                job = create(session, subject, job_in, idempotency=(idempotency_key, digest))
            return job, True
        except IntegrityError:
            existing = jobs_repo.get_by_idempotency_key(session, subject, idempotency_key)
            if existing is None:
                raise
    if existing.request_hash != digest:
        raise Conflict(
            "Idempotency-Key was already used with a different request body",
            ("header", "Idempotency-Key"),
        )
    return existing, False


def create(
    session: Session,
    subject: AuthSubject,
    job_in: JobCreate,
    *,
    idempotency: tuple[str, str] | None = None,
) -> Job:
    _check_task(session, subject, job_in)
    job_in = _with_default_direction(job_in)
    job_id = uuid.uuid4()
    spec = job_in.model_dump(mode="json")
    fingerprint = fingerprint_for_spec(session, subject.tenant_id, spec)
    resolved = warm_start.resolve(session, subject, job_in, job_in.resolved_space(), fingerprint)
    job = Job(
        id=job_id,
        tenant_id=subject.tenant_id,
        name=job_in.name,
        spec=spec,
        resolved_space=resolved.model_dump(mode="json"),
        fingerprint=fingerprint,
        n_trials=job_in.n_trials,
        max_parallel=job_in.max_parallel,
        max_failed_trials=job_in.max_failed_trials,
        study_name=f"job-{job_id}",
        idempotency_key=idempotency[0] if idempotency else None,
        request_hash=idempotency[1] if idempotency else None,
    )
    session.add(job)
    session.flush()  # the job row first: a duplicate idempotency key fails here
    # a compare job's confirmation reruns follow its n_trials tuning slots
    confirm = job_in.confirm_seeds * len(job_in.search_space.optimizers)
    _add_slots(session, job_id, range(job.n_trials + confirm))
    DispatchBuffer.for_session(session).add(job_id)
    return job


def _add_slots(session: Session, job_id: uuid.UUID, slots: range) -> None:
    max_attempts = get_settings().TRIAL_MAX_ATTEMPTS
    session.add_all(TrialSlot(job_id=job_id, slot=i, max_attempts=max_attempts) for i in slots)
    session.flush()


MUTABLE_FIELDS = ("n_trials", "max_parallel")


def update(session: Session, subject: AuthSubject, job_id: uuid.UUID, patch: JobUpdate) -> Job:
    """Raise ``n_trials`` (new slots are queued) or change ``max_parallel``.

    Anything else is fixed once trials have been sampled from it: 409 naming the field.
    """
    job = get(session, subject, job_id)
    if others := patch.other_fields():
        field = others[0]
        if field not in JobCreate.model_fields:
            raise InvalidField(f"Extra inputs are not permitted: {field!r}", ("body", field))
        raise Conflict(
            f"{field} cannot be changed after submission; only {' and '.join(MUTABLE_FIELDS)}",
            ("body", field),
        )
    job = trials.lock_job(session, job.id) or job  # serialise with workers and dispatch
    session.refresh(job)  # the row read above may predate the lock (a job that just ended)
    if job.status in TERMINAL_JOB_STATUSES or job.cancel_requested or job.stop_reason:
        raise Conflict(f"job is {job.status} and can no longer change", ("path", "job_id"))
    if patch.n_trials is not None and job.spec.get("mode") in ("compare", "sweep"):
        # compare: the slots after n_trials are its confirmation reruns; sweep: one slot
        # per point of its grid. Either way the layout is fixed.
        mode = job.spec["mode"]
        raise Conflict(f"n_trials of a {mode} job cannot change", ("body", "n_trials"))
    n_trials = job.n_trials if patch.n_trials is None else patch.n_trials
    max_parallel = job.max_parallel if patch.max_parallel is None else patch.max_parallel
    _check_update(job, n_trials, max_parallel)
    _add_slots(session, job.id, range(job.n_trials, n_trials))
    job.n_trials, job.max_parallel = n_trials, max_parallel
    job.spec = {**job.spec, "n_trials": n_trials, "max_parallel": max_parallel}
    payload = {"n_trials": n_trials, "max_parallel": max_parallel}
    recorder.emit(session, job.id, "job.updated", payload)
    DispatchBuffer.for_session(session).add(job.id)
    return job


def _check_update(job: Job, n_trials: int, max_parallel: int) -> None:
    if n_trials < job.n_trials:
        raise InvalidField(
            f"n_trials can only grow: {n_trials} < {job.n_trials} (cancel the job to stop it)",
            ("body", "n_trials"),
        )
    if max_parallel > n_trials:
        raise InvalidField(
            f"max_parallel ({max_parallel}) must be less than or equal to n_trials ({n_trials})",
            ("body", "max_parallel"),
        )
    if (job.spec.get("sampler") or {}).get("name") == "grid":
        size = grid_size(ResolvedSpace.model_validate(job.resolved_space, context=STORED_CONTEXT))
        if n_trials > size:
            msg = f"n_trials ({n_trials}) exceeds the grid's {size} points"
            raise InvalidField(msg, ("body", "n_trials"))


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


def _maximize(job: Job) -> bool:
    return bool(job.spec["task"].get("direction") == "maximize")


def best(session: Session, job: Job) -> BestRead | None:
    """The best completed trial (finite values first, then the earliest): one query."""
    run = trials.best_completed_run(session, job.id, maximize=_maximize(job))
    return _best_read(run) if run is not None else None


def _best_read(run: TrialRun) -> BestRead:
    value, kind = encode_float(run.value)
    return BestRead(
        value=value,
        value_kind=kind,
        trial=run.number,
        optimizer=run.optimizer or "",
        params=run.params,
        hyperparameters=run.hyperparameters,
    )


def pareto(session: Session, job: Job) -> ParetoRead:
    """The completed trials that no other completed trial dominates, in trial order."""
    objectives = lifecycle.objectives(job.spec)
    runs = trials.completed_runs(session, job.id)
    finals = trials.last_points(session, [r.id for r in runs])
    scored = []
    for run in sorted(runs, key=lambda r: r.number):
        metrics = finals[run.id].metrics if run.id in finals else {}
        values = [metrics.get(m) for m, _ in objectives]
        if all(v is not None and math.isfinite(v) for v in values):
            # as "lower is better" on every axis, so dominance is one comparison
            signs = [-1.0 if d == "maximize" else 1.0 for _, d in objectives]
            scored.append((run, values, [s * v for s, v in zip(signs, values, strict=True)]))
    front = [
        (run, values)
        for run, values, key in scored
        if not any(_dominates(other, key) for _, _, other in scored)
    ]
    return ParetoRead(
        objectives=[Objective.model_validate({"metric": m, "direction": d}) for m, d in objectives],
        trials=[
            ParetoTrial(
                trial=run.number,
                optimizer=run.optimizer or "",
                values=dict(zip([m for m, _ in objectives], values, strict=True)),
                params=run.params,
                hyperparameters=run.hyperparameters,
            )
            for run, values in front
        ],
    )


def comparison(session: Session, job: Job, target: float | None = None) -> ComparisonRead:
    """Each optimizer's tuning trials and confirmation reruns, best first (compare jobs).

    ``target`` (the endpoint's ``?target=``) is the value ``time_to_target`` measures
    against when the job has no ``target`` of its own; a different one is refused.
    """
    if job.spec.get("mode") != "compare":
        raise Conflict("job is not in mode 'compare'; see /best", ("path", "job_id"))
    job_target = job.spec.get("target")
    if job_target is not None and target is not None and target != job_target:
        msg = f"the job has its own target ({job_target}); omit ?target= or pass the same"
        raise InvalidField(msg, ("query", "target"))
    target = job_target if job_target is not None else target
    metric, spec_direction = lifecycle.objectives(job.spec)[0]
    direction: stats.Direction = "maximize" if spec_direction == "maximize" else "minimize"
    runs = trials.all_runs(session, job.id)
    finals = trials.last_points(session, [r.id for r in runs if r.slot < job.n_trials])
    seconds = {run_id: point.wall_time for run_id, point in finals.items()}
    names = sorted(job.resolved_space["optimizers"])
    budget = job.n_trials // len(names)
    rows = [
        _optimizer_row(name, runs, job.n_trials, direction, budget, target, seconds)
        for name in names
    ]
    return ComparisonRead(
        metric=metric,
        direction=direction,
        budget_per_optimizer=budget,
        confirm_seeds=int(job.spec.get("confirm_seeds") or 0),
        optimizers=sorted(rows, key=lambda row: _rank_key(row, direction)),
    )


def _optimizer_row(
    name: str,
    runs: list[TrialRun],
    n_trials: int,
    direction: stats.Direction,
    budget: int,
    target: float | None,
    seconds: dict[uuid.UUID, float],
) -> OptimizerComparison:
    tuning = [r for r in runs if r.optimizer == name and r.slot < n_trials]
    complete = [r for r in tuning if r.state == TrialState.COMPLETE and r.value is not None]
    pick = max if direction == "maximize" else min
    best = pick(complete, key=lambda r: r.value or 0.0) if complete else None
    confirmed = [
        r.value
        for r in runs
        if r.optimizer == name and r.slot >= n_trials and r.state == TrialState.COMPLETE
    ]
    finite = [v for v in confirmed if v is not None and math.isfinite(v)]
    ended = sorted((r for r in tuning if r.state != TrialState.RUNNING), key=lambda r: r.number)
    timeline = [
        stats.TrialTime(r.value, r.state == TrialState.COMPLETE, seconds.get(r.id, 0.0))
        for r in ended
    ]
    reached = stats.time_to_target(timeline, target, direction)
    curve = stats.expected_best(
        [r.value for r in complete if r.value is not None], budget, direction
    )
    return OptimizerComparison(
        optimizer=name,
        finished=sum(r.state in (TrialState.COMPLETE, TrialState.PRUNED) for r in tuning),
        failed=sum(r.state == TrialState.FAIL for r in tuning),
        best_trial=best.number if best else None,
        best_value=encode_float(best.value)[0] if best else None,
        best_hyperparameters=best.hyperparameters if best else {},
        confirmations=[encode_float(v)[0] for v in confirmed],
        confirmation_mean=statistics.fmean(finite) if finite else None,
        confirmation_std=statistics.stdev(finite) if len(finite) > 1 else None,
        expected_best=[ExpectedBest(k=e.k, mean=e.mean, low=e.low, high=e.high) for e in curve],
        time_to_target=TimeToTarget(
            target=reached.target, trials=reached.trials, seconds=reached.seconds
        ),
    )


def sensitivity(session: Session, job: Job) -> SensitivityRead:
    """A sweep's final metric against learning rate, per optimizer and seed."""
    if job.spec.get("mode") != "sweep":
        raise Conflict("job is not in mode 'sweep'", ("path", "job_id"))
    metric, spec_direction = lifecycle.objectives(job.spec)[0]
    direction: stats.Direction = "maximize" if spec_direction == "maximize" else "minimize"
    seeds = int((job.spec.get("sweep") or {}).get("seeds") or 1)
    resolved = ResolvedSpace.model_validate(job.resolved_space, context=STORED_CONTEXT)
    # a slot's value: its completed run (a retried slot has one, its last attempt)
    values = {
        r.slot: r.value
        for r in trials.all_runs(session, job.id)
        if r.state == TrialState.COMPLETE and r.value is not None and math.isfinite(r.value)
    }
    cells: dict[str, dict[float, list[float | None]]] = {}
    for slot in range(job.n_trials):
        point, seed = sweep_point(resolved, seeds, slot)
        name = point[OPTIMIZER_PARAM]
        lr = float(point[distribution_name(name, SWEEP_HP, resolved.optimizers[name][SWEEP_HP])])
        cells.setdefault(name, {}).setdefault(lr, [None] * seeds)[seed] = values.get(slot)
    return SensitivityRead(
        metric=metric,
        direction=direction,
        seeds=seeds,
        optimizers=[
            OptimizerSensitivity(
                optimizer=name,
                points=[
                    SensitivityPoint(lr=lr, values=per_seed, mean=_finite_mean(per_seed))
                    for lr, per_seed in sorted(by_lr.items())
                ],
            )
            for name, by_lr in sorted(cells.items())
        ],
    )


def _finite_mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return statistics.fmean(finite) if finite else None


def _rank_key(row: OptimizerComparison, direction: str) -> tuple[bool, float]:
    score = row.confirmation_mean if row.confirmation_mean is not None else row.best_value
    if score is None:
        return (True, 0.0)
    return (False, -score if direction == "maximize" else score)


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def to_read(session: Session, job: Job) -> JobRead:
    return to_reads(session, [job])[0]


def to_reads(session: Session, jobs: Sequence[Job]) -> list[JobRead]:
    """Jobs as responses in two queries for the whole page (counts, best), not per job."""
    ids = [job.id for job in jobs]
    counts = trials.run_state_counts_by_job(session, ids)
    bests = trials.best_runs(session, {job.id: _maximize(job) for job in jobs})
    return [_job_read(job, counts.get(job.id, {}), bests.get(job.id)) for job in jobs]


def _job_read(job: Job, run_counts: dict[str, int], best_run: TrialRun | None) -> JobRead:
    counts = {state.value: 0 for state in TrialState}
    counts.update(run_counts)
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    return JobRead(
        id=job.id,
        name=job.name,
        status=job.status,
        spec=JobCreate.model_validate(job.spec, context=STORED_CONTEXT),
        resolved_space=job.resolved_space,
        counts=counts,
        n_finished=finished,
        best=_best_read(best_run) if best_run is not None else None,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        event_seq=job.event_seq,
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
        source=run.source,
    )


def curve(session: Session, job: Job, number: int) -> CurveRead:
    run = trials.get_run_by_number(session, job.id, number)
    if run is None:
        raise NotFound(f"trial {number} not found", ("path", "number"))
    return CurveRead(
        job_id=job.id,
        trial=number,
        metric=job.spec["task"].get("metric", "val_loss"),
        points=[_curve_point(p) for p in trials.curve(session, run.id)],
    )


def _curve_point(point: CurvePointRow | Row[Any], metric: str | None = None) -> CurvePoint:
    """A stored epoch as a response; ``metric`` keeps only that one of its ``metrics``."""
    metrics = point.metrics
    if metric is not None:
        metrics = {metric: metrics[metric]} if metric in metrics else {}
    return CurvePoint.from_stored(
        epoch=point.epoch,
        step=point.step,
        wall_time=point.wall_time,
        train_loss=point.train_loss,
        val_loss=point.val_loss,
        val_metric=point.val_metric,
        metrics=metrics,
    )


def curves(
    session: Session, job: Job, *, limit: int, offset: int, metric: str | None = None
) -> Page[TrialCurve]:
    """A page of runs with their whole curves, in trial-number order: three queries a page
    (count, runs, points), whatever the page size."""
    runs, total = trials.list_runs(session, job.id, limit=limit, offset=offset)
    points = trials.curves(session, [run.id for run in runs])
    items = [
        TrialCurve(
            number=run.number,
            optimizer=run.optimizer,
            state=run.state,
            value=run.value,
            points=[_curve_point(p, metric) for p in points[run.id]],
        )
        for run in runs
    ]
    return Page[TrialCurve](items=items, total=total, limit=limit, offset=offset)


def param_importance(
    session: Session, job: Job, *, method: ImportanceMethod, optimizer: str | None = None
) -> ImportanceRead:
    """Parameter importance over the job's completed trials (first objective)."""
    if optimizer is not None and optimizer not in job.resolved_space["optimizers"]:
        choices = sorted(job.resolved_space["optimizers"])
        msg = f"optimizer {optimizer!r} is not in the job's search space; expected one of {choices}"
        raise InvalidField(msg, ("query", "optimizer"))
    metric, direction = lifecycle.objectives(job.spec)[0]
    rows = trials.completed_params(session, job.id, optimizer=optimizer)
    scores = importance.evaluate(
        job.resolved_space, rows, maximize=direction == "maximize", method=method
    )
    return ImportanceRead(metric=metric, importances=scores, n_trials=len(rows), method=method)
