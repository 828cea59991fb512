"""Datasets: raw loaders, a deterministic split, and tensors shaped for the model.

The loaders named by the catalogue return raw numpy arrays and are cached in-process,
because one worker runs many trials on the same data. ``load_dataset`` then does the
per-trial part: a train/validation split drawn from the trial's seed (stratified for
classification), features standardised with the *training* statistics only (the
validation set must not leak into the scaling), and float32 tensors on the device,
flat or as ``(C, H, W)`` images as the model asks.

Language modelling is different: the corpus is one character stream, split into a
training head and a held-out tail (neighbouring windows share context, so a random
split would leak), then cut into non-overlapping windows of the model's context
length; each window is one example, its targets the same characters shifted by one.

A name that is not a built-in may be an uploaded dataset's id; ``workers.training.
uploads`` resolves it (spec from the database, arrays from the content-addressed store).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from sklearn import datasets as skd

from workers.catalog import (
    DATASETS,
    DatasetSpec,
    InputKind,
    corpus,
    get_dataset_spec,
    import_object,
    validate_dataset_params,
)
from workers.training import uploads

VAL_FRACTION = 0.2
LM_VAL_FRACTION = 0.1
DEFAULT_CONTEXT = 64
_SEED_MOD = 2**64  # numpy's SeedSequence and torch.Generator take unsigned 64-bit seeds


@dataclass(frozen=True)
class DataSplit:
    """One trial's data, ready on its device.

    Regression targets are standardised like the features (the loss is then O(1)
    whatever the target's units); ``target_scale`` is the training targets' standard
    deviation, which turns a standardised RMSE back into the target's units.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    task_type: str
    n_features: int
    n_outputs: int
    target_scale: float = 1.0
    input_shape: tuple[int, ...] | None = None  # (C, H, W) when X is given as images


def resolve_dataset_spec(name: str) -> DatasetSpec:
    """A built-in's spec, or an uploaded dataset's (``name`` is then its id)."""
    if name not in DATASETS and uploads.looks_like_upload_id(name):
        return uploads.upload_spec(name)
    return get_dataset_spec(name)


def load_dataset(
    name: str,
    params: dict[str, object] | None = None,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    input_kind: InputKind = "flat",
    context_length: int | None = None,
) -> DataSplit:
    """Validate ``params``, load (cached) arrays, split by ``seed``, standardise, shape.

    ``input_kind="image"`` gives ``X`` as ``(N, C, H, W)``; ``context_length`` is the
    window of a language-modelling dataset (``DEFAULT_CONTEXT`` when ``None``).
    """
    spec = resolve_dataset_spec(name)
    resolved = validate_dataset_params(spec, params)
    if spec.task_type == "language_modeling":
        ids = import_object(spec.loader_path)(**resolved)
        return _windowed(spec, ids, context_length or DEFAULT_CONTEXT, device)
    if spec.source == "upload":
        X, y, given_val = uploads.load_arrays(spec.name)
    else:
        (X, y), given_val = import_object(spec.loader_path)(**resolved), None
    classification = spec.task_type == "classification"
    if given_val is None:
        train_idx, val_idx = split_indices(y, seed=seed, stratify=classification)
        X_train, X_val, y_train, y_val = X[train_idx], X[val_idx], y[train_idx], y[val_idx]
    else:
        # copies: the cached arrays are read-only and torch would share their memory
        X_train, y_train, X_val, y_val = X.copy(), y.copy(), *(a.copy() for a in given_val)
    X_train, X_val = _standardise(X_train, X_val)
    scale = 1.0
    if not classification:
        scale = float(y_train.std()) or 1.0
        y_train, y_val = _standardise(y_train, y_val)
    shape = spec.input_shape if input_kind == "image" else None
    y_dtype = torch.int64 if classification else torch.float32
    return DataSplit(
        X_train=_features(X_train, shape, device),
        y_train=torch.as_tensor(y_train, dtype=y_dtype, device=device),
        X_val=_features(X_val, shape, device),
        y_val=torch.as_tensor(y_val, dtype=y_dtype, device=device),
        task_type=spec.task_type,
        n_features=int(X.shape[1]),
        n_outputs=int(spec.n_classes or 1),
        target_scale=scale,
        input_shape=shape,
    )


def _features(
    X: np.ndarray, shape: tuple[int, ...] | None, device: torch.device | str
) -> torch.Tensor:
    """float32 on the device; un-flattened to ``(N, *shape)`` for image models."""
    tensor = torch.as_tensor(X, dtype=torch.float32, device=device)
    return tensor if shape is None else tensor.reshape(-1, *shape)


def _windowed(
    spec: DatasetSpec, ids: np.ndarray, context: int, device: torch.device | str
) -> DataSplit:
    """Held-out tail (at least one window), then non-overlapping windows of ``context``."""
    n_val = max(round(LM_VAL_FRACTION * len(ids)), context + 1)
    train_ids, val_ids = ids[:-n_val], ids[-n_val:]
    (X_train, y_train), (X_val, y_val) = _windows(train_ids, context), _windows(val_ids, context)
    if len(X_train) == 0:
        raise ValueError(f"dataset {spec.name!r} is too short for context_length={context}")

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)

    return DataSplit(
        X_train=tensor(X_train),
        y_train=tensor(y_train),
        X_val=tensor(X_val),
        y_val=tensor(y_val),
        task_type=spec.task_type,
        n_features=int(spec.n_features),
        n_outputs=int(spec.n_classes or spec.n_features),
    )


def _windows(ids: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``ids[i*T : (i+1)*T]`` and their next characters, one window per row."""
    n = (len(ids) - 1) // context
    inputs = ids[: n * context].reshape(n, context)
    targets = ids[1 : n * context + 1].reshape(n, context)
    return inputs, targets


def split_indices(y: np.ndarray, *, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and validation indices: ``VAL_FRACTION`` of each class (or of all).

    Stratifying keeps every class in the validation set of the small datasets (wine has
    48 examples of its rarest class), so accuracy is comparable across seeds.
    """
    rng = np.random.default_rng(seed % _SEED_MOD)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    val_parts = []
    for group in groups:
        n_val = round(VAL_FRACTION * len(group)) if len(group) > 1 else 0
        val_parts.append(rng.permutation(group)[:n_val])
    val = np.sort(np.concatenate(val_parts))
    train = np.setdiff1d(np.arange(len(y)), val, assume_unique=True)
    return train, val


def _standardise(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant columns (digits' blank pixels) stay 0
    return (train - mean) / std, (val - mean) / std


# -- loaders (named by the catalogue; return raw arrays, cached, read-only) ------------
def _frozen(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cached arrays are shared by every trial of the process: make them read-only."""
    X, y = np.ascontiguousarray(X), np.ascontiguousarray(y)
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y


@functools.cache
def _sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = getattr(skd, f"load_{name}")(return_X_y=True)
    return _frozen(X.astype(np.float64), y)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    return _sklearn("digits")


def load_iris() -> tuple[np.ndarray, np.ndarray]:
    return _sklearn("iris")


def load_wine() -> tuple[np.ndarray, np.ndarray]:
    return _sklearn("wine")


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    return _sklearn("breast_cancer")


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    return _sklearn("diabetes")


@functools.lru_cache(maxsize=4)
def load_python_docs(*, max_chars: int | None) -> np.ndarray:
    """The documentation corpus as character ids (see ``workers.catalog.corpus``)."""
    text = corpus.corpus_text()[:max_chars]
    ids = np.asarray(corpus.encode(text), dtype=np.uint8)
    ids.flags.writeable = False
    return ids


# At the largest settings one array is 200k x 1000 floats (0.8 GB in float32): keep few.
@functools.lru_cache(maxsize=2)
def make_synthetic_classification(
    *, n_examples: int, n_features: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels, half the features informative, ``noise`` of the labels random."""
    X, y = skd.make_classification(
        n_samples=n_examples,
        n_features=n_features,
        n_informative=max(2, n_features // 2),
        n_redundant=0,
        n_classes=2,
        flip_y=noise,
        random_state=seed,
    )
    return _frozen(X.astype(np.float32), y.astype(np.int64))


@functools.lru_cache(maxsize=2)
def make_synthetic_regression(
    *, n_examples: int, n_features: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A linear target of half the features; ``noise`` is its variance share of noise.

    The best achievable R^2 is therefore ``1 - noise``, whatever ``n_features``.
    """
    X, signal = skd.make_regression(
        n_samples=n_examples,
        n_features=n_features,
        n_informative=max(1, n_features // 2),
        random_state=seed,
    )
    signal = (signal - signal.mean()) / (signal.std() or 1.0)
    eps = np.random.default_rng(seed).standard_normal(n_examples)
    y = np.sqrt(1.0 - noise) * signal + np.sqrt(noise) * eps
    return _frozen(X.astype(np.float32), y.astype(np.float32))
