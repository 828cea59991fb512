"""Hand-made histories for the recommender tests: jobs and trial runs written directly.

Each trial is ``(optimizer, lr, value)`` or ``(optimizer, lr, value, state)``: its
Optuna params are ``{"optimizer": name, "<name>.lr": lr}``, in a search space where
every optimizer's ``lr`` is log-uniform on [1e-4, 1].
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

from sqlalchemy.orm import Session

from service.models import Job, TrialRun
from service.tenants.service import get_or_create_tenant

LR_SPACE = {"type": "float", "low": 1e-4, "high": 1.0, "log": True}
OPTIMIZERS = ("adamw", "lamb", "rmsprop", "sgd")
SPACE = {"optimizers": {name: {"lr": LR_SPACE} for name in OPTIMIZERS}}
_CLOCK = itertools.count()
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

Trial = tuple[Any, ...]

# a fingerprint as the index stores it; tests change one feature at a time
FP_IRIS: dict[str, Any] = {
    "version": 1,
    "model": "mlp",
    "n_parameters": 1000,
    "modality": "tabular",
    "task_type": "classification",
    "n_examples": 150,
    "n_features": 4,
    "n_classes": 3,
    "class_balance": 1.0,
    "epochs": 10,
    "batch_size": 32,
    "metric": "val_loss",
    "direction": "minimize",
}


def task_spec(
    model: str = "mlp",
    dataset: str = "iris",
    *,
    epochs: int = 10,
    batch_size: int = 32,
    metric: str = "val_loss",
    direction: str = "minimize",
    model_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "task": {
            "model": {"name": model, "params": model_params or {}},
            "dataset": {"name": dataset, "params": {}},
            "epochs": epochs,
            "batch_size": batch_size,
            "metric": metric,
            "direction": direction,
        }
    }


def tenant_id(session: Session, name: str) -> uuid.UUID:
    return get_or_create_tenant(session, name).id


def add_job(
    session: Session,
    tenant: str,
    trials: list[Trial],
    *,
    spec: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
    status: str = "completed",
    shared: bool = False,
) -> uuid.UUID:
    """A job with these trial runs; jobs are created one second apart, in call order."""
    job_id = uuid.uuid4()
    session.add(
        Job(
            id=job_id,
            tenant_id=tenant_id(session, tenant),
            status=status,
            spec=spec or task_spec(),
            resolved_space=SPACE,
            n_trials=max(len(trials), 1),
            max_parallel=1,
            study_name=f"job-{job_id}",
            shared=shared,
            fingerprint=fingerprint,
            created_at=_EPOCH + dt.timedelta(seconds=next(_CLOCK)),
        )
    )
    session.flush()
    for number, trial in enumerate(trials):
        optimizer, lr, value = trial[:3]
        state = trial[3] if len(trial) > 3 else "complete"
        session.add(
            TrialRun(
                job_id=job_id,
                slot=number,
                attempt=1,
                number=number,
                state=state,
                optimizer=optimizer,
                params={"optimizer": optimizer, f"{optimizer}.lr": lr},
                hyperparameters={"lr": lr},
                value=value,
            )
        )
    session.flush()
    return job_id
