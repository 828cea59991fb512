"""``GET /v1/models`` and ``GET /v1/datasets``: plain shapes.

The service fills them from the worker catalogue's metadata (``workers.catalog``), which
declares parameters with the optimizers' ``HParam``/``Domain`` types, so
``ModelParamRead.from_hparam(name, hp)`` describes them exactly as optimizer
hyperparameters are described.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import Field

from api_schemas.common import Schema
from api_schemas.optimizers import HyperparameterRead

TaskType: TypeAlias = Literal["classification", "regression", "language_modeling"]


class ModelParamRead(HyperparameterRead):
    """A model's (or a dataset loader's) parameter, in the hyperparameter shape."""


class ModelRead(Schema):
    name: str
    description: str
    task_types: list[str]
    params: list[ModelParamRead] = Field(default_factory=list)


class DatasetRead(Schema):
    """A dataset: ``meta`` holds further meta-features (modality, class balance ...)."""

    name: str
    description: str
    task_type: TaskType
    n_examples: int
    n_features: int
    n_classes: int | None = None
    metrics: list[str] = Field(default_factory=list)
    source: Literal["builtin", "upload"] = "builtin"
    params: list[ModelParamRead] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


__all__ = ["DatasetRead", "ModelParamRead", "ModelRead", "TaskType"]
