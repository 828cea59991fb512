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


def dataset_file(fmt: str, *, n: int = 300, seed: int = 1) -> tuple[str, bytes, dict[str, str]]:
    """A small learnable classification set as an upload: (filename, bytes, form fields)."""
    import io

    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, X=X, y=y)
        return "mine.npz", buf.getvalue(), {}
    columns = {f"f{i}": X[:, i] for i in range(X.shape[1])} | {"label": y}
    if fmt == "csv":
        header = ",".join(columns)
        rows = [",".join(str(columns[c][i]) for c in columns) for i in range(n)]
        return "mine.csv", ("\n".join([header, *rows]) + "\n").encode(), {"target": "label"}
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return "mine.parquet", buf.getvalue(), {"target": "label"}
