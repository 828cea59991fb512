"""Factories shared by tests: plain functions (Polar style)."""

from __future__ import annotations


def make_key(tenant: str, *, read_only: bool = False) -> str:
    from service.db import session_scope
    from service.tenants.service import add_key, get_or_create_tenant

    scopes = "jobs:read" if read_only else "jobs:read jobs:write"
    with session_scope() as session:
        return add_key(session, get_or_create_tenant(session, tenant), scopes=scopes)


def example_job(**overrides: object) -> dict[str, object]:
    """The job body of the issue, as a client writes it."""
    job: dict[str, object] = {
        "name": "digits-mlp",
        "task": {
            "model": {"name": "mlp", "params": {"width": 128}},
            "dataset": {"name": "digits"},
            "epochs": 3,
            "batch_size": 64,
            "metric": "val_accuracy",
            "direction": "maximize",
            "seed": 0,
        },
        "search_space": {
            "optimizers": {
                "sgd": {
                    "lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
                    "momentum": {"type": "float", "low": 0.0, "high": 0.99},
                },
                "adamw": {},
            }
        },
        "n_trials": 6,
        "max_parallel": 2,
        "sampler": {"name": "tpe"},
        "pruner": {"name": "none"},
    }
    job.update(overrides)
    return job
