"""The catalogue of models and datasets a job may name: metadata only, no torch.

The API process imports this package to validate jobs and to serve ``GET /v1/models``
and ``GET /v1/datasets``; it must not pull in torch, scikit-learn or numpy. Workers
resolve ``builder_path``/``loader_path`` with ``import_object`` when they train.
"""

from __future__ import annotations

from workers.catalog import corpus
from workers.catalog.estimate import ModelIO, check_task_limits, estimate_parameters, model_io
from workers.catalog.registry import (
    DATASETS,
    MODELS,
    check_compatible,
    compatible_datasets,
    get_dataset_spec,
    get_model_spec,
    import_object,
    list_dataset_specs,
    list_model_specs,
    validate_dataset_params,
    validate_model_params,
)
from workers.catalog.specs import (
    TASK_TYPES,
    CatalogError,
    DatasetSpec,
    Direction,
    InputKind,
    Modality,
    ModelSpec,
    TaskType,
    default_direction,
    metrics_for,
)

__all__ = [
    "DATASETS",
    "MODELS",
    "TASK_TYPES",
    "CatalogError",
    "DatasetSpec",
    "Direction",
    "InputKind",
    "Modality",
    "ModelIO",
    "ModelSpec",
    "TaskType",
    "check_compatible",
    "check_task_limits",
    "compatible_datasets",
    "corpus",
    "default_direction",
    "estimate_parameters",
    "get_dataset_spec",
    "get_model_spec",
    "import_object",
    "list_dataset_specs",
    "list_model_specs",
    "metrics_for",
    "model_io",
    "validate_dataset_params",
    "validate_model_params",
]
