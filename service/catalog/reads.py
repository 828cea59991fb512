"""Response models for the worker catalogue, built from its torch-free metadata."""

from __future__ import annotations

import functools

from api_schemas import DatasetRead, ModelParamRead, ModelRead
from workers import catalog


@functools.cache
def model_reads() -> list[ModelRead]:
    return [
        ModelRead(
            name=spec.name,
            description=spec.description,
            task_types=list(spec.task_types),
            params=[ModelParamRead.from_hparam(n, hp) for n, hp in spec.params.items()],
        )
        for spec in catalog.list_model_specs()
    ]


@functools.cache
def dataset_reads() -> list[DatasetRead]:
    return [
        DatasetRead(
            name=spec.name,
            description=spec.description,
            task_type=spec.task_type,
            n_examples=spec.n_examples,
            n_features=spec.n_features,
            n_classes=spec.n_classes,
            metrics=catalog.metrics_for(spec.task_type),
            source=spec.source,
            params=[ModelParamRead.from_hparam(n, hp) for n, hp in spec.params.items()],
            meta=spec.meta_features(),
        )
        for spec in catalog.list_dataset_specs()
    ]
