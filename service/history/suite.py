"""The seed suite: small tuning jobs over every built-in model and compatible dataset.

A fresh installation has no history, so recommendations have nothing to stand on.
``optserve seed-history`` runs one small job per task of a suite and keeps the result
(shared with every tenant by default). The suite is derived from the catalogue
(``workers.catalog``: each model declares the modalities and task types it takes), so a
model or dataset added there is seeded too; the tables below only make each task small
enough that the whole ``small`` suite runs in minutes on a 2-core CPU.

Torch-free: the CLI and the API process may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from workers.catalog import (
    compatible_datasets,
    default_direction,
    get_dataset_spec,
    list_model_specs,
    metrics_for,
)

SuiteName: TypeAlias = Literal["small", "tiny"]
SUITE_NAMES: tuple[SuiteName, ...] = ("small", "tiny")
JOB_NAME_PREFIX = "seed"
"""Seed jobs are named ``seed/<model>-<dataset>``: the bench and tests find tasks by it."""
SEED_OPTIMIZERS = ("sgd", "adamw", "radam", "ademamix")

# Small architectures: the transformer on python_docs especially must stay tiny.
_MODEL_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "mlp": {"width": 64, "depth": 2},
        "cnn": {"channels": 16, "depth": 2},
        "resnet": {"width": 16, "blocks": 1},
        "transformer": {"d_model": 32, "layers": 1, "heads": 2, "context_length": 32},
    }
)
_DATASET_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "synthetic_classification": {"n_examples": 1000},
        "synthetic_regression": {"n_examples": 1000},
        "python_docs": {"max_chars": 20_000},
    }
)
# (epochs, batch size): about a hundred optimizer steps per trial in a few epochs (each
# epoch boundary costs database writes: curve point, Optuna report, cancel check).
_SCHEDULE: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "iris": (5, 8),
        "wine": (5, 8),
        "breast_cancer": (4, 16),
        "diabetes": (4, 16),
        "digits": (4, 64),
        "synthetic_classification": (4, 32),
        "synthetic_regression": (4, 32),
        "python_docs": (2, 32),
    }
)
_DEFAULT_SCHEDULE = (4, 64)
# Convolutional models are the slow ones on a CPU: fewer epochs.
_MODEL_EPOCHS: Mapping[str, int] = MappingProxyType({"cnn": 3, "resnet": 3})


@dataclass(frozen=True)
class SeedTask:
    """One model on one dataset, with the settings every trial of its job trains with."""

    model: str
    dataset: str
    epochs: int
    batch_size: int
    model_params: Mapping[str, Any] = field(default_factory=dict)
    dataset_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}-{self.dataset}"

    @property
    def job_name(self) -> str:
        return f"{JOB_NAME_PREFIX}/{self.key}"

    def task_spec(self, seed: int = 0) -> dict[str, Any]:
        """The job's ``task``: the task type's default metric and its direction."""
        metric = metrics_for(get_dataset_spec(self.dataset).task_type)[0]
        return {
            "model": {"name": self.model, "params": dict(self.model_params)},
            "dataset": {"name": self.dataset, "params": dict(self.dataset_params)},
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "metric": metric,
            "direction": default_direction(metric),
            "seed": seed,
        }


@dataclass(frozen=True)
class Suite:
    """Tasks, the optimizers each job chooses among (default priors), and the budget."""

    name: SuiteName
    tasks: tuple[SeedTask, ...]
    optimizers: tuple[str, ...] = SEED_OPTIMIZERS
    n_trials: int = 16
    n_startup_trials: int = 6

    def job_body(self, task: SeedTask) -> dict[str, Any]:
        """The ``POST /v1/jobs`` body of one task (TPE, no pruner: full curves)."""
        return {
            "name": task.job_name,
            "task": task.task_spec(),
            "search_space": {"optimizers": {name: {} for name in self.optimizers}},
            "n_trials": self.n_trials,
            "max_parallel": 1,
            "sampler": {"name": "tpe", "options": {"n_startup_trials": self.n_startup_trials}},
            "pruner": {"name": "none"},
        }

    def job_bodies(self) -> list[dict[str, Any]]:
        return [self.job_body(task) for task in self.tasks]

    def idempotency_key(self, task: SeedTask) -> str:
        """Running the same suite again finds its jobs instead of creating new ones."""
        return f"seed-history/{self.name}/{task.key}/v1"


def catalog_tasks() -> list[SeedTask]:
    """Every built-in model on every built-in dataset it can train on."""
    tasks = []
    for model in list_model_specs():
        for dataset in compatible_datasets(model):
            epochs, batch_size = _SCHEDULE.get(dataset.name, _DEFAULT_SCHEDULE)
            tasks.append(
                SeedTask(
                    model=model.name,
                    dataset=dataset.name,
                    epochs=_MODEL_EPOCHS.get(model.name, epochs),
                    batch_size=batch_size,
                    model_params=dict(_MODEL_PARAMS.get(model.name, {})),
                    dataset_params=dict(_DATASET_PARAMS.get(dataset.name, {})),
                )
            )
    return tasks


_TINY_KEYS = ("logreg-iris", "mlp-wine", "logreg-diabetes")


def get_suite(name: str) -> Suite:
    """``small``: the whole catalogue (the shipped history). ``tiny``: three fast tasks,
    two trials each, for tests and a quick look."""
    if name == "small":
        return Suite("small", tuple(catalog_tasks()))
    if name == "tiny":
        tasks = tuple(
            SeedTask(t.model, t.dataset, 3, t.batch_size, t.model_params, t.dataset_params)
            for t in catalog_tasks()
            if t.key in _TINY_KEYS
        )
        return Suite("tiny", tasks, optimizers=("sgd", "adamw"), n_trials=2, n_startup_trials=2)
    raise ValueError(f"Unknown suite {name!r}; expected one of {list(SUITE_NAMES)}")


__all__ = [
    "JOB_NAME_PREFIX",
    "SEED_OPTIMIZERS",
    "SUITE_NAMES",
    "SeedTask",
    "Suite",
    "SuiteName",
    "catalog_tasks",
    "get_suite",
]
