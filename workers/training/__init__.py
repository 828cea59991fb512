"""Torch side of the workers: built-in datasets and models, and the training loop.

Importing this package imports torch; the API process imports ``workers.catalog``
only.
"""

from __future__ import annotations

from workers.training.datasets import DataSplit, load_dataset
from workers.training.loop import (
    Diverged,
    EpochMetrics,
    TrainResult,
    evaluate,
    param_groups,
    resolve_device,
    train,
)
from workers.training.models import build_model, count_parameters

__all__ = [
    "DataSplit",
    "Diverged",
    "EpochMetrics",
    "TrainResult",
    "build_model",
    "count_parameters",
    "evaluate",
    "load_dataset",
    "param_groups",
    "resolve_device",
    "train",
]
