"""Model sizes computed from the catalogue alone, and the service's task limits.

The API must refuse a job whose model would not fit (a 1024-wide, 12-layer
Transformer) before any worker builds it, and the API process has no torch. Each
model's trainable-parameter count is therefore written out analytically here; a
test checks every formula against ``count_parameters(build_model(...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.catalog.registry import (
    check_compatible,
    get_dataset_spec,
    get_model_spec,
    validate_dataset_params,
    validate_model_params,
)
from workers.catalog.specs import CatalogError, DatasetSpec, ModelSpec


@dataclass(frozen=True)
class ModelIO:
    """What a builder is given: flat input width, outputs, and the image shape if any."""

    n_features: int
    n_outputs: int
    input_shape: tuple[int, ...] | None


def model_io(dataset: DatasetSpec, params: Mapping[str, object] | None = None) -> ModelIO:
    """The builder's inputs for ``dataset``, as the worker's ``DataSplit`` will give them."""
    n_features = int(dataset.meta_features(params)["n_features"])  # type: ignore[call-overload]
    return ModelIO(n_features, int(dataset.n_classes or 1), dataset.input_shape)


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _logreg(io: ModelIO, _params: Mapping[str, Any]) -> int:
    return _linear(io.n_features, io.n_outputs)


def _mlp(io: ModelIO, p: Mapping[str, Any]) -> int:
    w, depth = int(p["width"]), int(p["depth"])
    return _linear(io.n_features, w) + (depth - 1) * _linear(w, w) + _linear(w, io.n_outputs)


def _channels_in(io: ModelIO) -> int:
    if io.input_shape is None:
        raise CatalogError("an image model needs a dataset with an input_shape")
    return io.input_shape[0]


def _cnn(io: ModelIO, p: Mapping[str, Any]) -> int:
    c, depth = int(p["channels"]), int(p["depth"])
    convs = _linear(9 * _channels_in(io), c) + (depth - 1) * _linear(9 * c, c)
    return convs + _linear(c, io.n_outputs)


def _resnet(io: ModelIO, p: Mapping[str, Any]) -> int:
    w, blocks = int(p["width"]), int(p["blocks"])
    stem = 9 * _channels_in(io) * w + 2 * w  # conv without bias, then batch norm
    block = 2 * (9 * w * w + 2 * w)
    return stem + blocks * block + _linear(w, io.n_outputs)


def _transformer(io: ModelIO, p: Mapping[str, Any]) -> int:
    d, layers, context = int(p["d_model"]), int(p["layers"]), int(p["context_length"])
    # two layer norms, qkv and output projections, a 4x MLP
    block = 2 * (2 * d) + _linear(d, 3 * d) + _linear(d, d) + _linear(d, 4 * d) + _linear(4 * d, d)
    embeddings = io.n_features * d + context * d
    return embeddings + layers * block + 2 * d + _linear(d, io.n_outputs)


_ESTIMATORS: Mapping[str, Callable[[ModelIO, Mapping[str, Any]], int]] = {
    "logreg": _logreg,
    "mlp": _mlp,
    "cnn": _cnn,
    "resnet": _resnet,
    "transformer": _transformer,
}


def estimate_parameters(
    model: str | ModelSpec,
    model_params: Mapping[str, object] | None,
    dataset: str | DatasetSpec,
    dataset_params: Mapping[str, object] | None,
) -> int:
    """Trainable parameters of ``model`` built for ``dataset``, without building it.

    Raises ``CatalogError`` for unknown names, bad parameters or an incompatible pair.
    """
    m = get_model_spec(model) if isinstance(model, str) else model
    d = get_dataset_spec(dataset) if isinstance(dataset, str) else dataset
    check_compatible(m, d)
    resolved_model = validate_model_params(m.name, model_params)
    resolved_data = validate_dataset_params(d, dataset_params)
    return _ESTIMATORS[m.name](model_io(d, resolved_data), resolved_model)


def check_task_limits(
    model: str | ModelSpec,
    model_params: Mapping[str, object] | None,
    dataset: str | DatasetSpec,
    dataset_params: Mapping[str, object] | None,
    epochs: int,
    *,
    max_parameters: int,
    max_epochs: int,
) -> int:
    """Refuse a task over the service's caps; returns the parameter estimate.

    ``CatalogError.field`` is ``"epochs"`` or ``"params"`` (the model's parameters are
    what make it too big), so the API's 422 ``loc`` points at what to change.
    """
    if epochs > max_epochs:
        raise CatalogError(f"epochs={epochs} is over the limit of {max_epochs}", field="epochs")
    n = estimate_parameters(model, model_params, dataset, dataset_params)
    if n > max_parameters:
        name = model if isinstance(model, str) else model.name
        raise CatalogError(
            f"model {name!r} with these parameters has {n:,} trainable parameters, "
            f"over the limit of {max_parameters:,}",
            field="params",
        )
    return n


__all__ = ["ModelIO", "check_task_limits", "estimate_parameters", "model_io"]
