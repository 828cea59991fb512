"""Spec types of the model and dataset catalogue, and the metrics each task reports.

Torch-free on purpose: the API process imports this to validate jobs and to serve
``GET /v1/models`` and ``GET /v1/datasets``, and it must stay light. Builders and
loaders are named by ``"module:function"`` paths and imported only by a worker.

Parameters are declared with the optimizers' own ``HParam``/``Domain`` types, so one
domain language (and one error sentence, ``Domain.describe``) serves optimizers,
models and datasets alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeAlias

from optimizers._spec import HParam, Scalar

TaskType: TypeAlias = Literal["classification", "regression", "language_modeling"]
Direction: TypeAlias = Literal["minimize", "maximize"]
# Modalities a dataset can have and a model can take. "text" is a character stream
# (the transformer's); "sequence" is kept for uploaded sequences; nothing uses it yet.
Modality: TypeAlias = Literal["tabular", "image", "text", "sequence"]
# How a model wants one example: a flat feature vector, a (C, H, W) image, or a
# window of token ids. The training code shapes the data accordingly.
InputKind: TypeAlias = Literal["flat", "image", "tokens"]

TASK_TYPES: tuple[TaskType, ...] = ("classification", "regression", "language_modeling")

_NO_PARAMS: Mapping[str, HParam] = MappingProxyType({})


def _no_params() -> Mapping[str, HParam]:
    return _NO_PARAMS


# Every metric a trial reports, in the order the curves table and Optuna see them,
# and whether bigger is better. The first metric of each task is its default objective.
# Costs every task reports, for multi-objective jobs (quality vs. time or memory):
# train_time is the seconds of training so far; peak_memory the bytes of CUDA memory
# allocated at the peak on a GPU, and on a CPU the bytes held by parameters, gradients
# and optimizer state (the part the optimizer choice changes; activations untracked).
_COSTS = ("train_time", "peak_memory")
_METRICS: Mapping[TaskType, tuple[str, ...]] = MappingProxyType(
    {
        "classification": ("val_accuracy", "val_loss", "train_loss", *_COSTS),
        "regression": ("val_rmse", "val_r2", "val_loss", "train_loss", *_COSTS),
        # val_loss is the mean cross-entropy per character in nats; val_bpc the same
        # in bits (the unit char-level LM results are quoted in); perplexity its exp.
        "language_modeling": ("val_loss", "val_bpc", "val_perplexity", "train_loss", *_COSTS),
    }
)
_DIRECTIONS: Mapping[str, Direction] = MappingProxyType(
    {
        "val_accuracy": "maximize",
        "val_r2": "maximize",
        "val_rmse": "minimize",
        "val_loss": "minimize",
        "val_bpc": "minimize",
        "val_perplexity": "minimize",
        "train_loss": "minimize",
        "train_time": "minimize",
        "peak_memory": "minimize",
    }
)


class CatalogError(ValueError):
    """A model or dataset name, or one of its parameters, that the catalogue rejects.

    ``field`` names the offending parameter, or is ``None`` when the model or dataset
    name itself is at fault; the API turns it into the ``loc`` of a 422 (rule 5:
    errors name the field and the reason). A ``ValueError`` so that the worker treats
    it like the optimizers' own checks: a non-retryable trial failure.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[object, ...]:
        # Keep ``field`` across pickling (Celery serialises task exceptions).
        return (_rebuild_catalog_error, (str(self), self.field))


def _rebuild_catalog_error(message: str, field: str | None) -> CatalogError:
    return CatalogError(message, field=field)


@dataclass(frozen=True)
class ModelSpec:
    """A model family the workers can build, without importing it.

    Attributes:
        name: registry key (lowercase).
        description: one sentence for ``GET /v1/models``.
        builder_path: ``"module:function"`` called as
            ``builder(n_features, n_outputs, **params) -> torch.nn.Module``.
        params: the architecture's hyperparameters (tunable like an optimizer's).
        modalities: dataset modalities the model can take.
        task_types: tasks it has a head for.
        input_kind: how one example is handed to the model (``"image"`` builders
            also get ``input_shape=(C, H, W)``).
        check: a cross-parameter rule beyond each domain (``d_model`` divisible by
            ``heads``), called with the resolved params; raises ``CatalogError``.
        bf16: whether the forward pass may run under bf16 autocast on a GPU.
    """

    name: str
    description: str
    builder_path: str = "workers.training.models:build_mlp"
    params: Mapping[str, HParam] = field(default_factory=_no_params)
    modalities: tuple[Modality, ...] = ("tabular",)
    task_types: tuple[TaskType, ...] = ("classification", "regression")
    input_kind: InputKind = "flat"
    check: Callable[[Mapping[str, object]], None] | None = None
    bf16: bool = True

    def defaults(self) -> dict[str, Scalar | None]:
        return {name: hp.default for name, hp in self.params.items()}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the workers can load, and the meta-features known without loading it.

    ``n_examples`` and ``n_features`` are the values at the default ``params`` (for the
    synthetic datasets); ``meta_features(params)`` gives them for other values.

    Attributes:
        name: registry key (lowercase).
        description: one sentence for ``GET /v1/datasets``.
        loader_path: ``"module:function"`` called as ``loader(**params) -> (X, y)``
            with raw numpy arrays; the training code splits and standardises them.
        task_type: ``"classification"``, ``"regression"`` or ``"language_modeling"``
            (``n_examples`` then counts characters; the examples trained on are
            windows of the model's context length).
        modality: what one example is; image datasets are also given flat to
            models that take ``"tabular"`` input.
        n_examples: number of examples (train and validation together).
        n_features: number of input features (flattened for images; the vocabulary
            size for language modelling, the width of one-hot characters).
        n_classes: number of classes, ``None`` for regression; the vocabulary size
            for language modelling (each position is a next-character classification).
        params: loader parameters (generation settings of the synthetic datasets).
        class_balance: fraction of examples per class, in label order, when known
            without generating the data.
        input_shape: the un-flattened shape of one example (``(C, H, W)`` for images),
            which the convolutional models take.
        source: ``"builtin"``, or ``"upload"`` for a tenant's uploaded dataset (built
            from its database row, never listed in this registry).
    """

    name: str
    description: str
    loader_path: str
    task_type: TaskType
    modality: Modality
    n_examples: int
    n_features: int
    n_classes: int | None
    params: Mapping[str, HParam] = field(default_factory=_no_params)
    class_balance: tuple[float, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    source: Literal["builtin", "upload"] = "builtin"

    def defaults(self) -> dict[str, Scalar | None]:
        return {name: hp.default for name, hp in self.params.items()}

    def meta_features(self, params: Mapping[str, object] | None = None) -> dict[str, object]:
        """Static meta-features, as recommendations and ``GET /v1/datasets`` read them.

        ``params`` (already validated) overrides ``n_examples``/``n_features`` for the
        datasets that take them; anything that needs the data itself (e.g. the class
        balance of a synthetic set) is left ``None`` for the worker to compute.
        """
        values = {**self.defaults(), **(params or {})}
        return {
            "modality": self.modality,
            "task_type": self.task_type,
            "n_examples": values.get("n_examples", self.n_examples),
            "n_features": values.get("n_features", self.n_features),
            "n_classes": self.n_classes,
            "class_balance": list(self.class_balance) if self.class_balance else None,
        }


def metrics_for(task_type: str) -> list[str]:
    """Every metric a trial of this task reports each epoch; the first is the default objective."""
    try:
        return list(_METRICS[task_type])  # type: ignore[index]
    except KeyError:
        raise CatalogError(
            f"Unknown task type {task_type!r}; expected one of {list(TASK_TYPES)}",
            field="task_type",
        ) from None


def default_direction(metric: str) -> Direction:
    """Whether Optuna should ``maximize`` or ``minimize`` this metric."""
    try:
        return _DIRECTIONS[metric]
    except KeyError:
        raise CatalogError(
            f"Unknown metric {metric!r}; expected one of {sorted(_DIRECTIONS)}", field="metric"
        ) from None
