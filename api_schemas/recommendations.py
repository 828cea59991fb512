"""``POST /v1/recommendations``: a task in, ranked (optimizer, hyperparameters) out.

A task is given either as a catalogue ``task`` (a model and a built-in or uploaded
dataset, as a job names them) or as raw ``meta_features``. Shape, ranges and optimizer
names fail here with a 422 whose ``loc`` names the field; whether the model, the
dataset and their parameters exist is checked by the service against the catalogue,
exactly as for ``JobCreate.task``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import Field, field_validator, model_validator

from api_schemas.common import FiniteFloat, Schema, field_error, raise_errors
from api_schemas.jobs import CatalogName, DatasetRef, ModelRef
from api_schemas.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_TRIALS
from api_schemas.search_space import lookup_optimizer
from api_schemas.warm_start import Method

Modality: TypeAlias = Literal["tabular", "image", "text", "sequence"]
TaskType: TypeAlias = Literal["classification", "regression", "language_modeling"]
Direction: TypeAlias = Literal["minimize", "maximize"]

MAX_NEIGHBOURS = 100
"""Most past tasks ``k`` may ask for: beyond that, "nearest" means little."""
MAX_ALLOWED_OPTIMIZERS = 32

Epochs: TypeAlias = Annotated[int, Field(strict=True, ge=1, le=MAX_EPOCHS)]
BatchSize: TypeAlias = Annotated[int, Field(strict=True, ge=1, le=MAX_BATCH_SIZE)]


class TaskFingerprint(Schema):
    """What the recommender compares tasks by (Feurer et al.'s meta-features, and more).

    The response echoes the fingerprint of the task asked about; a request may give one
    directly as ``meta_features``. ``n_classes`` is 0 for regression. ``class_balance``
    is the smallest class's share over the largest's (1 = balanced), ``null`` when
    unknown. Any optional feature left ``null`` is simply not compared.
    """

    model: CatalogName | None = None
    """Model family (``"cnn"``, ``"mlp"``...)."""
    n_parameters: Annotated[int, Field(strict=True, ge=1)] | None = None
    modality: Modality
    task_type: TaskType | None = None
    n_examples: Annotated[int, Field(strict=True, ge=1)]
    n_features: Annotated[int, Field(strict=True, ge=1)]
    n_classes: Annotated[int, Field(strict=True, ge=0)]
    class_balance: Annotated[FiniteFloat, Field(ge=0, le=1)] | None = None
    epochs: Epochs | None = None
    batch_size: BatchSize | None = None
    metric: CatalogName | None = None
    direction: Direction | None = None

    @field_validator("n_classes")
    @classmethod
    def _not_one_class(cls, n_classes: int) -> int:
        if n_classes == 1:
            raise ValueError("n_classes must be 0 (regression) or at least 2")
        return n_classes

    @model_validator(mode="after")
    def _balance_needs_classes(self) -> Self:
        if self.class_balance is not None and self.n_classes == 0:
            msg = "class_balance is for classification: n_classes is 0 (regression)"
            raise_errors(
                "TaskFingerprint",
                [field_error(("class_balance",), "balance_without_classes", msg, None)],
            )
        return self


class RecommendationTask(Schema):
    """A task named like a job's: a catalogue model on a built-in or uploaded dataset.

    Unlike a job, the training settings are optional: those left out are not compared.
    """

    model: ModelRef
    dataset: DatasetRef
    epochs: Epochs | None = None
    batch_size: BatchSize | None = None
    metric: CatalogName | None = None
    direction: Direction | None = None


class RecommendationCreate(Schema):
    """``POST /v1/recommendations``.

    Give exactly one of ``task`` and ``meta_features``. ``method``:

    * ``nearest``: the ``k`` past tasks nearest to this one (Feurer et al., AAAI 2015),
      the best configuration of each optimizer on each, ranked by their
      similarity-weighted normalised score over those ``k`` tasks.
    * ``portfolio``: a greedy set of configurations that together do best over the
      ``k`` nearest past tasks (Wistuba et al., 2015): each added configuration is the
      one that most raises the similarity-weighted mean, over those tasks, of the best
      score among the chosen ones.

    ``optimizers`` restricts the answer to those optimizers; ``budget`` caps the number
    of configurations returned (the portfolio's size; without it a portfolio stops
    growing once no configuration adds anything).
    """

    task: RecommendationTask | None = None
    meta_features: TaskFingerprint | None = None
    method: Method = "nearest"
    k: Annotated[int, Field(strict=True, ge=1, le=MAX_NEIGHBOURS)] = 5
    optimizers: (
        Annotated[list[str], Field(min_length=1, max_length=MAX_ALLOWED_OPTIMIZERS)] | None
    ) = None
    budget: Annotated[int, Field(strict=True, ge=1, le=MAX_TRIALS)] | None = None

    @field_validator("optimizers")
    @classmethod
    def _known_optimizers(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        errors = []
        for i, name in enumerate(names):
            try:
                lookup_optimizer(name)
            except KeyError as exc:
                errors.append(field_error((i,), "unknown_optimizer", str(exc.args[0]), name))
                continue
            if name in names[:i]:
                errors.append(field_error((i,), "duplicate", f"{name!r} repeated", name))
        raise_errors("RecommendationCreate", errors)
        return names

    @model_validator(mode="after")
    def _one_task(self) -> Self:
        if self.task is None and self.meta_features is None:
            msg = "give the task (model and dataset) or its meta_features"
            raise_errors("RecommendationCreate", [field_error(("task",), "missing", msg, None)])
        if self.task is not None and self.meta_features is not None:
            msg = "give either task or meta_features, not both"
            raise_errors(
                "RecommendationCreate",
                [field_error(("meta_features",), "task_given_twice", msg, None)],
            )
        return self


class SupportingJobRead(Schema):
    """A past trial behind a recommendation: its job, number, and score there."""

    job_id: uuid.UUID
    trial: int
    similarity: float
    """Of that job's task to the one asked about, in (0, 1]."""
    score: float
    """The normalised score (per-task quantile, 1 = best) credited to the configuration."""


class RecommendationRead(Schema):
    """One configuration: ``params`` go to Optuna's ``enqueue_trial`` as they are."""

    rank: int
    optimizer: str
    params: dict[str, Any]
    hyperparameters: dict[str, Any]
    schedule: dict[str, Any] | None
    expected_score: float
    similarity: float
    """Of the task where this configuration was run."""
    support: list[SupportingJobRead]


class RecommendationList(Schema):
    method: Method
    k: int
    fingerprint: TaskFingerprint
    n_past_tasks: int
    """Past tasks (finished jobs) the caller may learn from, before ``k`` was applied."""
    items: list[RecommendationRead]


__all__ = [
    "MAX_NEIGHBOURS",
    "RecommendationCreate",
    "RecommendationList",
    "RecommendationRead",
    "RecommendationTask",
    "SupportingJobRead",
    "TaskFingerprint",
]
