"""Recommendation requests: the catalogue checks a task needs, then the engine's answer.

``api_schemas.recommendations`` has checked shape, ranges and optimizer names. Here
we check, with the same catalogue functions that validate a job's task, what needs
the catalogue or the caller's uploads: the model and its parameters, the dataset
(built-in or the caller's own upload) and its parameters, their compatibility and
the metric. Errors are 422s whose ``loc`` names the field.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api_schemas.recommendations import (
    RecommendationCreate,
    RecommendationList,
    RecommendationRead,
    RecommendationTask,
    SupportingJobRead,
    TaskFingerprint,
)
from service.auth import AuthSubject
from service.datasets.service import resolve_dataset_for_job
from service.errors import InvalidField
from service.recommend import engine
from service.recommend.fingerprint import FINGERPRINT_VERSION, fingerprint_for_task
from service.recommend.index import load_history
from workers import catalog

Loc = tuple[str | int, ...]


def _at(loc: Loc, exc: catalog.CatalogError) -> InvalidField:
    """The error at ``loc``, or at the named parameter below ``loc[:-1] + params``."""
    if exc.field is None:
        return InvalidField(str(exc), loc)
    return InvalidField(str(exc), (*loc[:-1], "params", exc.field))


def _check_metric(metric: str | None, task_type: str | None, loc: Loc) -> str | None:
    """The metric's direction; 422 when the metric is unknown or not reported here."""
    if metric is None:
        return None
    try:
        direction = catalog.default_direction(metric)
    except catalog.CatalogError as exc:
        raise InvalidField(str(exc), loc) from None
    if task_type is not None and metric not in catalog.metrics_for(task_type):
        expected = catalog.metrics_for(task_type)
        msg = f"metric {metric!r} is not reported for {task_type}; expected one of {expected}"
        raise InvalidField(msg, loc)
    return direction


def task_fingerprint(
    session: Session, subject: AuthSubject, task: RecommendationTask
) -> dict[str, Any]:
    """The fingerprint of a catalogue model on a built-in or the caller's uploaded dataset."""
    base: Loc = ("body", "task")
    try:
        dataset = resolve_dataset_for_job(session, subject, task.dataset.name)
    except catalog.CatalogError as exc:
        raise InvalidField(str(exc), (*base, "dataset", "name")) from None
    try:
        catalog.validate_dataset_params(dataset, task.dataset.params)
    except catalog.CatalogError as exc:
        raise _at((*base, "dataset", "name"), exc) from None
    try:
        catalog.validate_model_params(task.model.name, task.model.params)
    except catalog.CatalogError as exc:
        raise _at((*base, "model", "name"), exc) from None
    try:
        catalog.check_compatible(task.model.name, dataset)
    except catalog.CatalogError as exc:
        raise InvalidField(str(exc), (*base, "dataset", "name")) from None
    direction = _check_metric(task.metric, dataset.task_type, (*base, "metric"))
    return fingerprint_for_task(
        task.model.name,
        task.model.params,
        dataset,
        task.dataset.params,
        epochs=task.epochs,
        batch_size=task.batch_size,
        metric=task.metric,
        direction=task.direction or direction,
    )


def meta_fingerprint(meta: TaskFingerprint) -> dict[str, Any]:
    """The fingerprint given as raw meta-features, its model and metric checked."""
    base: Loc = ("body", "meta_features")
    if meta.model is not None:
        try:
            catalog.get_model_spec(meta.model)
        except catalog.CatalogError as exc:
            raise InvalidField(str(exc), (*base, "model")) from None
    direction = _check_metric(meta.metric, meta.task_type, (*base, "metric"))
    features = meta.model_dump(mode="json")
    features["direction"] = meta.direction or direction
    return {"version": FINGERPRINT_VERSION, **features}


def _read(rank: int, rec: engine.Recommendation) -> RecommendationRead:
    return RecommendationRead(
        rank=rank,
        optimizer=rec.optimizer,
        params=rec.params,
        hyperparameters=rec.hyperparameters,
        schedule=rec.schedule,
        expected_score=rec.expected_score,
        similarity=rec.similarity,
        support=[
            SupportingJobRead(
                job_id=s.job_id,
                trial=s.trial,
                similarity=round(s.similarity, 6),
                score=round(s.score, 6),
            )
            for s in rec.support
        ],
    )


def recommend(
    session: Session, subject: AuthSubject, body: RecommendationCreate
) -> RecommendationList:
    if body.task is not None:
        fingerprint = task_fingerprint(session, subject, body.task)
    else:
        assert body.meta_features is not None  # the schema requires one of the two
        fingerprint = meta_fingerprint(body.meta_features)
    history = load_history(session, subject.tenant_id)
    recommendations = engine.recommend_from(
        history,
        fingerprint,
        method=body.method,
        k=body.k,
        optimizers=body.optimizers,
        budget=body.budget,
    )
    shown = {k: v for k, v in fingerprint.items() if k in TaskFingerprint.model_fields}
    return RecommendationList(
        method=body.method,
        k=body.k,
        fingerprint=TaskFingerprint.model_validate(shown),
        n_past_tasks=len(history),
        items=[_read(i, rec) for i, rec in enumerate(recommendations, start=1)],
    )
