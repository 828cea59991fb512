"""The ``optserve`` CLI as a user runs it, against the real embedded stack (`optserve up`):
``submit --watch`` on a real job, ``best --format python`` executed, ``export`` read back.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from service.client import Client
from tests.e2e.harness import embedded_up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

JOB = {
    "name": "cli-e2e",
    "task": {
        "model": {"name": "mlp", "params": {"width": 16}},
        "dataset": {"name": "iris"},
        "epochs": 3,
        "batch_size": 32,
        "metric": "val_accuracy",
        "direction": "maximize",
    },
    "search_space": {"optimizers": ["adamw", "radam"]},
    "lookahead": {},
    "schedule": ["wsd"],
    "n_trials": 4,
    "max_parallel": 1,
    "pruner": {"name": "none"},
}

BUILD = """
import json, sys, torch
namespace = {}
exec(sys.stdin.read(), namespace)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
optimizer, scheduler = namespace["make_optimizer"](model.parameters(), 30)
loss = model(torch.randn(5, 4)).sum()
loss.backward()
optimizer.step()
scheduler.step()
group = optimizer.param_groups[0]
print(json.dumps({
    "cls": type(optimizer).__name__,
    "inner": type(optimizer.optimizer).__name__,
    "k": optimizer.k,
    "alpha": optimizer.alpha,
    "initial_lr": group["initial_lr"],
    "multipliers": [scheduler.lr_lambdas[0](s) for s in (0, 15, 30)],
}))
"""


def test_cli_submit_watch_best_and_export(tmp_path: Path) -> None:
    with embedded_up(tmp_path) as (stack, key):
        job_file = tmp_path / "job.yaml"
        job_file.write_text(yaml.safe_dump(JOB))
        conn = ("--url", stack.url, "--key", key)
        watched = stack.run("submit", str(job_file), "--watch", *conn)
        job_id = watched.split("submitted job ", 1)[1].split()[0]
        client = Client(stack.url, key)
        job = client.job(job_id)
        assert job.status == "completed", (job, stack.logs())
        best = client.best(job_id)

        # the live display ran, and the output ends with the best configuration
        head, _, tail = watched.rpartition("best configuration:")
        assert "finished 4" in head and "top trials" in head, watched
        assert "event stream unavailable" not in head, watched  # the events drove it
        assert json.loads(tail) == best.model_dump(mode="json")

        # the python snippet builds Lookahead over the tuned optimizer with a WSD schedule
        snippet = stack.run("best", job_id, "--format", "python", *conn)
        built = subprocess.run(
            [sys.executable, "-c", BUILD],
            input=snippet,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        got = json.loads(built.stdout)
        hp = best.hyperparameters
        inner = {"lookahead+adamw": "AdamW", "lookahead+radam": "RAdam"}[best.optimizer]
        assert (got["cls"], got["inner"]) == ("Lookahead", inner)
        assert (got["k"], got["alpha"], got["initial_lr"]) == (
            hp["lookahead_k"],
            hp["lookahead_alpha"],
            hp["lr"],
        )
        assert got["multipliers"][-1] == pytest.approx(0.0)  # WSD decays to final_frac 0

        # exports: one row per (trial, epoch), values equal to /trials and /curves
        trials = {t.number: t for t in client.trials(job_id)}
        curves = {c.number: c.points for c in client.curves(job_id)}
        n_rows = sum(max(1, len(curves.get(n, []))) for n in trials)
        stack.run("export", job_id, "-o", str(tmp_path / "t.csv"), *conn)
        stack.run("export", job_id, "-o", str(tmp_path / "t.parquet"), *conn)
        stack.run("export", job_id, "--format", "json", "-o", str(tmp_path / "t.out"), *conn)
        with (tmp_path / "t.csv").open() as fh:
            csv_rows = list(csv.DictReader(fh))
        parquet_rows = pq.read_table(tmp_path / "t.parquet").to_pylist()
        assert len(csv_rows) == len(parquet_rows) == n_rows == 4 * 3
        for row, prow in zip(csv_rows, parquet_rows, strict=True):
            trial, epoch = trials[int(row["trial"])], int(row["epoch"])
            point = curves[trial.number][epoch - 1]
            assert (prow["trial"], prow["epoch"]) == (trial.number, epoch)
            assert float(row["value"]) == prow["value"] == trial.value
            assert float(row["val_metric"]) == prow["val_metric"] == point.val_metric
            assert row["param.optimizer"] == prow["param.optimizer"] == trial.optimizer
            assert float(row["hp.lr"]) == prow["hp.lr"] == trial.hyperparameters["lr"]
        nested = json.loads((tmp_path / "t.out").read_text())
        assert [t["number"] for t in nested["trials"]] == sorted(trials)
        assert sum(len(t["points"]) for t in nested["trials"]) == n_rows
    assert stack.procs["up"].returncode == 0, stack.logs()
