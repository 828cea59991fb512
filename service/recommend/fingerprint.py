"""A task's fingerprint: what the recommender compares past and new tasks by.

The fingerprint is a flat JSON object (stored in ``jobs.fingerprint`` at submit time)
with the model family and its parameter count, the dataset's meta-features
(modality, task type, examples, features, classes, class balance) and the training
settings (epochs, batch size, metric, direction). Everything comes from catalogue
metadata and the upload's stored meta-features: nothing loads data or imports torch.
A value that cannot be known (a synthetic set's class balance, a deleted upload) is
``None`` and is simply not compared.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import UploadedDataset
from workers import catalog
from workers.catalog import DatasetSpec

FINGERPRINT_VERSION = 1
NUMERIC_FEATURES = (
    "n_parameters",
    "n_examples",
    "n_features",
    "n_classes",
    "class_balance",
    "epochs",
    "batch_size",
)
CATEGORICAL_FEATURES = ("model", "modality", "task_type", "metric", "direction")


def balance_ratio(fractions: Sequence[float] | None) -> float | None:
    """The smallest class's share over the largest's: 1 balanced, towards 0 skewed."""
    if not fractions or len(fractions) < 2 or max(fractions) <= 0:
        return None
    return round(min(fractions) / max(fractions), 4)


def fingerprint_for_task(
    model: str | None,
    model_params: Mapping[str, object] | None,
    dataset: DatasetSpec | None,
    dataset_params: Mapping[str, object] | None,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    metric: str | None = None,
    direction: str | None = None,
) -> dict[str, Any]:
    """The fingerprint of ``model`` on ``dataset`` (either may be unknown: ``None``)."""
    features: dict[str, Any] = {
        "version": FINGERPRINT_VERSION,
        "model": model,
        "n_parameters": None,
        "modality": None,
        "task_type": None,
        "n_examples": None,
        "n_features": None,
        "n_classes": None,
        "class_balance": None,
        "epochs": epochs,
        "batch_size": batch_size,
        "metric": metric,
        "direction": direction,
    }
    if dataset is None:
        return features
    try:
        meta = dataset.meta_features(catalog.validate_dataset_params(dataset, dataset_params))
    except catalog.CatalogError:
        meta = dataset.meta_features()
    features.update(
        modality=meta["modality"],
        task_type=meta["task_type"],
        n_examples=meta["n_examples"],
        n_features=meta["n_features"],
        n_classes=0 if dataset.task_type == "regression" else (dataset.n_classes or 0),
        class_balance=balance_ratio(meta["class_balance"]),  # type: ignore[arg-type]
    )
    if model is not None:
        # an incompatible or since-changed pair: the count stays unknown
        with contextlib.suppress(catalog.CatalogError):
            features["n_parameters"] = catalog.estimate_parameters(
                model, model_params, dataset, dataset_params
            )
    return features


def _dataset_of(session: Session, tenant_id: uuid.UUID, name: object) -> DatasetSpec | None:
    """A built-in, or ``tenant_id``'s upload; ``None`` if neither (e.g. since deleted)."""
    if not isinstance(name, str):
        return None
    if name in catalog.DATASETS:
        return catalog.get_dataset_spec(name)
    try:
        dataset_id = uuid.UUID(name)
    except ValueError:
        return None
    row = session.scalar(
        select(UploadedDataset).where(
            UploadedDataset.id == dataset_id, UploadedDataset.tenant_id == tenant_id
        )
    )
    return None if row is None else row.spec()


def _objective(spec: Mapping[str, Any], task: Mapping[str, Any]) -> tuple[Any, Any]:
    """The metric and direction trials were scored by (a multi-objective job: the first)."""
    objectives = spec.get("objectives") or []
    if objectives and isinstance(objectives[0], Mapping):
        return objectives[0].get("metric"), objectives[0].get("direction")
    return task.get("metric"), task.get("direction")


def fingerprint_for_spec(
    session: Session, tenant_id: uuid.UUID, spec: Mapping[str, Any]
) -> dict[str, Any]:
    """The fingerprint of a job's spec (``JobCreate.model_dump(mode="json")``).

    ``tenant_id`` owns the job: an uploaded dataset is looked up among its uploads.
    Tolerant of stored specs that no longer resolve: unknown parts become ``None``.
    """
    task = spec.get("task") or {}
    model_ref = task.get("model") or {}
    dataset_ref = task.get("dataset") or {}
    model = model_ref.get("name")
    metric, direction = _objective(spec, task)
    return fingerprint_for_task(
        model if model in catalog.MODELS else None,
        model_ref.get("params") or {},
        _dataset_of(session, tenant_id, dataset_ref.get("name")),
        dataset_ref.get("params") or {},
        epochs=task.get("epochs"),
        batch_size=task.get("batch_size"),
        metric=metric,
        direction=direction,
    )


__all__ = [
    "CATEGORICAL_FEATURES",
    "FINGERPRINT_VERSION",
    "NUMERIC_FEATURES",
    "balance_ratio",
    "fingerprint_for_spec",
    "fingerprint_for_task",
]
