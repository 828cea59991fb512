"""The registry of built-in models and datasets: one literal entry each.

Adding a model is a builder in ``workers.training.models`` plus one ``ModelSpec``
here; adding a built-in dataset is a loader plus one ``DatasetSpec``. The tests check
that every path resolves and that every model trains on every dataset it accepts.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from optimizers._spec import Domain, HParam, Scalar
from workers.catalog import corpus
from workers.catalog.specs import CatalogError, DatasetSpec, ModelSpec

_LOADERS = "workers.training.datasets"
_BUILDERS = "workers.training.models"


# -- models ---------------------------------------------------------------------------
def _heads_divide_d_model(params: Mapping[str, object]) -> None:
    d_model, heads = cast(int, params["d_model"]), cast(int, params["heads"])
    if d_model % heads:
        raise CatalogError(
            f"Invalid value for parameter 'heads' of model 'transformer': {heads} "
            f"(must divide d_model={d_model})",
            field="heads",
        )


_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="logreg",
        description="Linear model: logistic (softmax) regression, or least squares for "
        "regression targets.",
        builder_path=f"{_BUILDERS}:build_logreg",
        modalities=("tabular", "image"),
        task_types=("classification", "regression"),
    ),
    ModelSpec(
        name="mlp",
        description="Multi-layer perceptron: `depth` hidden layers of `width` units.",
        builder_path=f"{_BUILDERS}:build_mlp",
        params=MappingProxyType(
            {
                "width": HParam(128, Domain.integer(4, 4096), doc="units per hidden layer"),
                "depth": HParam(2, Domain.integer(1, 8), doc="number of hidden layers"),
                "activation": HParam(
                    "relu", Domain.one_of("relu", "gelu", "tanh"), doc="hidden activation"
                ),
                "dropout": HParam(
                    0.0, Domain.interval(0.0, 0.9), doc="dropout after each hidden layer"
                ),
            }
        ),
        modalities=("tabular", "image"),
        task_types=("classification", "regression"),
    ),
    ModelSpec(
        name="cnn",
        description="Small ConvNet for images: `depth` blocks of 3x3 conv, ReLU and 2x2 "
        "max-pooling (while the image is larger than 1x1), global average pool, linear head.",
        builder_path=f"{_BUILDERS}:build_cnn",
        params=MappingProxyType(
            {
                "channels": HParam(32, Domain.integer(4, 256), doc="channels of every conv"),
                "depth": HParam(2, Domain.integer(1, 4), doc="number of conv blocks"),
            }
        ),
        modalities=("image",),
        input_kind="image",
    ),
    ModelSpec(
        name="resnet",
        description="Small residual network with batch norm: a 3x3 stem, `blocks` basic "
        "residual blocks of `width` channels (no downsampling), global average pool.",
        builder_path=f"{_BUILDERS}:build_resnet",
        params=MappingProxyType(
            {
                "width": HParam(32, Domain.integer(4, 256), doc="channels of every conv"),
                "blocks": HParam(2, Domain.integer(1, 8), doc="number of residual blocks"),
            }
        ),
        modalities=("image",),
        input_kind="image",
    ),
    ModelSpec(
        name="transformer",
        description="Small causal (GPT-style, pre-norm) Transformer for character-level "
        "language modelling over windows of `context_length` characters.",
        builder_path=f"{_BUILDERS}:build_transformer",
        params=MappingProxyType(
            {
                "d_model": HParam(128, Domain.integer(16, 1024), doc="embedding width"),
                "layers": HParam(2, Domain.integer(1, 12), doc="number of Transformer blocks"),
                "heads": HParam(4, Domain.integer(1, 16), doc="attention heads (divide d_model)"),
                "context_length": HParam(
                    64, Domain.integer(8, 1024), doc="characters per training window"
                ),
                "dropout": HParam(0.0, Domain.interval(0.0, 0.5), doc="dropout in each block"),
            }
        ),
        modalities=("text",),
        task_types=("language_modeling",),
        input_kind="tokens",
        check=_heads_divide_d_model,
    ),
)

# -- datasets -------------------------------------------------------------------------
_DIGITS_BALANCE = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)


def _balance(counts: tuple[int, ...]) -> tuple[float, ...]:
    total = sum(counts)
    return tuple(round(c / total, 4) for c in counts)


def _synthetic_params(noise_doc: str) -> Mapping[str, HParam]:
    return MappingProxyType(
        {
            "n_examples": HParam(2000, Domain.integer(100, 200_000), doc="number of examples"),
            "n_features": HParam(20, Domain.integer(2, 1000), doc="number of input features"),
            "noise": HParam(0.1, Domain.interval(0.0, 1.0), doc=noise_doc),
            "seed": HParam(0, Domain.integer(0, 2**32 - 1), doc="seed of the data generator"),
        }
    )


_DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        name="digits",
        description="scikit-learn's 8x8 handwritten digits (UCI), 10 classes.",
        loader_path=f"{_LOADERS}:load_digits",
        task_type="classification",
        modality="image",
        n_examples=1797,
        n_features=64,
        n_classes=10,
        class_balance=_balance(_DIGITS_BALANCE),
        input_shape=(1, 8, 8),
    ),
    DatasetSpec(
        name="iris",
        description="scikit-learn's iris flowers: 4 measurements, 3 species.",
        loader_path=f"{_LOADERS}:load_iris",
        task_type="classification",
        modality="tabular",
        n_examples=150,
        n_features=4,
        n_classes=3,
        class_balance=_balance((50, 50, 50)),
    ),
    DatasetSpec(
        name="wine",
        description="scikit-learn's wine recognition: 13 chemical measurements, 3 cultivars.",
        loader_path=f"{_LOADERS}:load_wine",
        task_type="classification",
        modality="tabular",
        n_examples=178,
        n_features=13,
        n_classes=3,
        class_balance=_balance((59, 71, 48)),
    ),
    DatasetSpec(
        name="breast_cancer",
        description="scikit-learn's Wisconsin breast cancer: 30 features, malignant/benign.",
        loader_path=f"{_LOADERS}:load_breast_cancer",
        task_type="classification",
        modality="tabular",
        n_examples=569,
        n_features=30,
        n_classes=2,
        class_balance=_balance((212, 357)),
    ),
    DatasetSpec(
        name="diabetes",
        description="scikit-learn's diabetes progression: 10 features, one real target.",
        loader_path=f"{_LOADERS}:load_diabetes",
        task_type="regression",
        modality="tabular",
        n_examples=442,
        n_features=10,
        n_classes=None,
    ),
    DatasetSpec(
        name="synthetic_classification",
        description="Generated binary classification (scikit-learn make_classification), "
        "half of the features informative.",
        loader_path=f"{_LOADERS}:make_synthetic_classification",
        task_type="classification",
        modality="tabular",
        n_examples=2000,
        n_features=20,
        n_classes=2,
        params=_synthetic_params("fraction of labels assigned at random"),
    ),
    DatasetSpec(
        name="synthetic_regression",
        description="Generated linear regression (scikit-learn make_regression), "
        "half of the features informative.",
        loader_path=f"{_LOADERS}:make_synthetic_regression",
        task_type="regression",
        modality="tabular",
        n_examples=2000,
        n_features=20,
        n_classes=None,
        params=_synthetic_params("fraction of the target's variance that is noise"),
    ),
    DatasetSpec(
        name="python_docs",
        description="Character-level language modelling on the Python documentation that "
        "ships with CPython (pydoc_data.topics); the last 10% is held out.",
        loader_path=f"{_LOADERS}:load_python_docs",
        task_type="language_modeling",
        modality="text",
        n_examples=corpus.corpus_length(),
        n_features=corpus.VOCAB_SIZE,
        n_classes=corpus.VOCAB_SIZE,
        params=MappingProxyType(
            {
                "max_chars": HParam(
                    None,
                    Domain.integer(10_000, None, nullable=True),
                    doc="use only the first max_chars characters (null: all of them)",
                )
            }
        ),
    ),
)

MODELS: MappingProxyType[str, ModelSpec] = MappingProxyType({s.name: s for s in _MODELS})
DATASETS: MappingProxyType[str, DatasetSpec] = MappingProxyType({s.name: s for s in _DATASETS})


# -- lookups --------------------------------------------------------------------------
def get_model_spec(name: str) -> ModelSpec:
    """The spec of a model; ``CatalogError`` (``field=None``) names the choices."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise CatalogError(
            f"Unknown model {name!r}; expected one of {sorted(MODELS)}", field=None
        ) from None


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec of a dataset; ``CatalogError`` (``field=None``) names the choices."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise CatalogError(
            f"Unknown dataset {name!r}; expected one of {sorted(DATASETS)}", field=None
        ) from None


def list_model_specs() -> list[ModelSpec]:
    return list(_MODELS)


def list_dataset_specs() -> list[DatasetSpec]:
    return list(_DATASETS)


def compatible_datasets(model: str | ModelSpec) -> list[DatasetSpec]:
    """The built-in datasets a model can train on."""
    spec = get_model_spec(model) if isinstance(model, str) else model
    return [d for d in _DATASETS if _incompatibility(spec, d) is None]


def check_compatible(model: str | ModelSpec, dataset: str | DatasetSpec) -> None:
    """Raise ``CatalogError`` (``field=None``) when ``model`` cannot take ``dataset``."""
    m = get_model_spec(model) if isinstance(model, str) else model
    d = get_dataset_spec(dataset) if isinstance(dataset, str) else dataset
    reason = _incompatibility(m, d)
    if reason is not None:
        raise CatalogError(f"Model {m.name!r} cannot train on dataset {d.name!r}: {reason}")


def _incompatibility(model: ModelSpec, dataset: DatasetSpec) -> str | None:
    if dataset.modality not in model.modalities:
        return f"it takes {', '.join(model.modalities)} data, not {dataset.modality}"
    if dataset.task_type not in model.task_types:
        return f"it has no head for {dataset.task_type}"
    return None


# -- parameter validation -------------------------------------------------------------
def validate_model_params(
    name: str, params: Mapping[str, object] | None
) -> dict[str, Scalar | None]:
    """The model's parameters with defaults filled, each checked against its domain."""
    spec = get_model_spec(name)
    resolved = _resolve(f"model {name!r}", spec.params, params)
    if spec.check is not None:
        spec.check(resolved)
    return resolved


def validate_dataset_params(
    name: str | DatasetSpec, params: Mapping[str, object] | None
) -> dict[str, Scalar | None]:
    """The dataset's parameters with defaults filled, each checked against its domain.

    Takes a spec as well as a name, for uploaded datasets (which take no parameters).
    """
    spec = get_dataset_spec(name) if isinstance(name, str) else name
    return _resolve(f"dataset {spec.name!r}", spec.params, params)


def _resolve(
    owner: str, declared: Mapping[str, HParam], given: Mapping[str, object] | None
) -> dict[str, Scalar | None]:
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise CatalogError(f"Parameters of {owner} must be a mapping, got {given!r}")
    for key in given:
        if key not in declared:
            expected = sorted(declared) or "no parameters"
            raise CatalogError(
                f"Unknown parameter {key!r} for {owner}; expected {expected}", field=str(key)
            )
    out: dict[str, Scalar | None] = {}
    for key, hp in declared.items():
        value = given.get(key, hp.default)
        if not hp.domain.contains(value):
            raise CatalogError(
                f"Invalid value for parameter {key!r} of {owner}: {value!r} "
                f"(must be {hp.domain.describe()})",
                field=key,
            )
        # JSON gives 0 for 0.0: store floats as floats so resolved params compare equal.
        if hp.domain.kind == "float" and isinstance(value, int | float):
            value = float(value)
        out[key] = cast("Scalar | None", value)
    return out


def import_object(path: str) -> Any:
    """Resolve a ``"package.module:name"`` path; called by workers only, never at import."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
