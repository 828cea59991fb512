"""``mode: compare`` end to end: equal budgets, confirmation reruns, the comparison payload.

In-process: the job is POSTed with the TestClient, then ``run_trial`` is called slot by
slot as a worker would (real training on digits, real Optuna storage on SQLite), and
``GET /v1/jobs/{id}/comparison`` is checked against the stored trials.
"""

from __future__ import annotations

import itertools
import math
import statistics
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api_schemas.search_space import OPTIMIZER_PARAM, sweep_space
from service.db import session_scope
from service.models import CurvePoint, Job, TrialRun
from tests.factories import example_job
from workers.samplers import sweep_role
from workers.trial_runner import run_trial

OPTIMIZERS = ("adamw", "radam", "sgd")  # slot i tunes OPTIMIZERS[i % 3] (names sorted)
TASK = {
    "model": {"name": "mlp", "params": {"width": 16}},
    "dataset": {"name": "digits"},
    "epochs": 2,
    "batch_size": 256,
    "metric": "val_accuracy",
    "direction": "maximize",
    "seed": 0,
}
N_TRIALS, CONFIRM_SEEDS = 6, 2


def _submit(client: TestClient, auth: dict[str, str], **overrides: Any) -> uuid.UUID:
    body = example_job(
        task=TASK,
        n_trials=N_TRIALS,
        max_parallel=1,
        mode="compare",
        confirm_seeds=CONFIRM_SEEDS,
        search_space={"optimizers": {name: {} for name in OPTIMIZERS}},
        sampler={"name": "random", "seed": 0},
    )
    body.update(overrides)
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


def _runs(job_id: uuid.UUID) -> list[TrialRun]:
    with session_scope() as session:
        stmt = select(TrialRun).where(TrialRun.job_id == job_id).order_by(TrialRun.number)
        return list(session.scalars(stmt))


def _train_seconds(run: TrialRun) -> float:
    with session_scope() as session:
        stmt = select(CurvePoint.wall_time).where(CurvePoint.trial_id == run.id)
        return float(max(session.scalars(stmt)))


def test_compare_three_optimizers_and_read_the_comparison(
    client: TestClient, auth: dict[str, str]
) -> None:
    """One job (training is the slow part) read twice: without and with a target."""
    job_id = _submit(client, auth)
    for slot in range(N_TRIALS + CONFIRM_SEEDS * len(OPTIMIZERS)):
        run_trial(str(job_id), slot, "w1")
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "completed"
    _check_payload(client, auth, job_id)
    _check_time_to_target(client, auth, job_id)


def _check_payload(client: TestClient, auth: dict[str, str], finished_job: uuid.UUID) -> None:
    runs = _runs(finished_job)
    assert all(r.state == "complete" for r in runs)
    read = client.get(f"/v1/jobs/{finished_job}/comparison", headers=auth).json()
    assert read["budget_per_optimizer"] == 2 and read["confirm_seeds"] == CONFIRM_SEEDS
    assert sorted(row["optimizer"] for row in read["optimizers"]) == list(OPTIMIZERS)
    for row in read["optimizers"]:
        mine = [r for r in runs if r.optimizer == row["optimizer"]]
        tuning = [r for r in mine if r.slot < N_TRIALS]
        reruns = sorted((r for r in mine if r.slot >= N_TRIALS), key=lambda r: r.slot)
        values = [r.value for r in tuning if r.value is not None]
        assert len(tuning) == row["finished"] == 2 and row["failed"] == 0
        # best configuration: the best of its stored tuning trials
        best = max(tuning, key=lambda r: r.value or -math.inf)
        assert row["best_value"] == best.value and row["best_trial"] == best.number
        assert row["best_hyperparameters"] == best.hyperparameters
        # confirmations: the stored reruns, seeds + 1 and + 2, of that configuration
        assert row["confirmations"] == [r.value for r in reruns]
        assert [r.seed for r in reruns] == [1, 2]
        assert all(r.params == best.params for r in reruns)
        assert row["confirmation_mean"] == pytest.approx(statistics.fmean(row["confirmations"]))
        assert row["confirmation_std"] == pytest.approx(statistics.stdev(row["confirmations"]))
        # expected best after k trials, k = 1 .. budget
        curve = row["expected_best"]
        assert [e["k"] for e in curve] == [1, 2]
        assert curve[0]["mean"] == pytest.approx(statistics.fmean(values))
        assert (curve[0]["low"], curve[0]["high"]) == (min(values), max(values))
        assert all(a["mean"] <= b["mean"] for a, b in itertools.pairwise(curve))
        assert all(e["low"] <= e["mean"] <= e["high"] <= row["best_value"] for e in curve)
        # no target on the job and none asked: nothing measured
        assert row["time_to_target"] == {"target": None, "trials": None, "seconds": None}
    means = [row["confirmation_mean"] for row in read["optimizers"]]
    assert means == sorted(means, reverse=True)  # val_accuracy: best first


def _check_time_to_target(
    client: TestClient, auth: dict[str, str], finished_job: uuid.UUID
) -> None:
    runs = _runs(finished_job)
    url = f"/v1/jobs/{finished_job}/comparison"
    # the worst tuning value overall: every optimizer's first trial may or may not reach it
    target = min(r.value for r in runs if r.slot < N_TRIALS and r.value is not None)
    read = client.get(url, params={"target": target}, headers=auth).json()
    for row in read["optimizers"]:
        tuning = sorted(
            (r for r in runs if r.optimizer == row["optimizer"] and r.slot < N_TRIALS),
            key=lambda r: r.number,
        )
        first = next(i for i, r in enumerate(tuning, start=1) if (r.value or 0.0) >= target)
        spent = sum(_train_seconds(r) for r in tuning[:first])
        reached = row["time_to_target"]
        assert reached["target"] == target and reached["trials"] == first
        assert reached["seconds"] == pytest.approx(spent)
    never = client.get(url, params={"target": 1.5}, headers=auth).json()
    assert all(
        row["time_to_target"] == {"target": 1.5, "trials": None, "seconds": None}
        for row in never["optimizers"]
    )
    bad = client.get(url, params={"target": "nan"}, headers=auth)
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"][0]["loc"] == ["query", "target"]


def test_the_jobs_own_target_is_the_one_measured(client: TestClient, auth: dict[str, str]) -> None:
    job_id = _submit(client, auth, target=0.5)  # no trial run: the payload is empty
    url = f"/v1/jobs/{job_id}/comparison"
    read = client.get(url, headers=auth).json()
    for row in read["optimizers"]:
        assert row["time_to_target"] == {"target": 0.5, "trials": None, "seconds": None}
        assert row["expected_best"] == [
            {"k": k, "mean": None, "low": None, "high": None} for k in (1, 2)
        ]
    assert client.get(url, params={"target": 0.5}, headers=auth).status_code == 200
    other = client.get(url, params={"target": 0.6}, headers=auth)
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["query", "target"]
    assert client.get(f"/v1/jobs/{job_id}/sensitivity", headers=auth).status_code == 409


# -- mode: sweep ----------------------------------------------------------------------------
SWEEP_LRS = [0.3, 0.01, 0.001]  # listed out of order: the report sorts them


def test_sweep_reports_the_metric_against_the_learning_rate(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = example_job(
        task=TASK | {"epochs": 1},
        max_parallel=1,
        mode="sweep",
        sweep={"lrs": SWEEP_LRS},
        # ranges for other hyperparameters are ignored: a sweep keeps them at defaults
        search_space={
            "optimizers": {
                "sgd": {"momentum": {"type": "float", "low": 0.1, "high": 0.9}},
                "adamw": {},
            }
        },
    )
    del body["n_trials"]  # derived: 2 optimizers x 3 lrs x 1 seed
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["spec"]["n_trials"] == 6 and job["spec"]["sweep"] == {"lrs": SWEEP_LRS, "seeds": 1}
    job_id = uuid.UUID(job["id"])
    for slot in range(6):
        run_trial(str(job_id), slot, "w1")
    runs = sorted(_runs(job_id), key=lambda r: r.slot)
    assert all(r.state == "complete" and r.seed == 0 for r in runs)
    # slot i: optimizers by name, then lrs in the order given; the rest at defaults
    assert [(r.optimizer, r.hyperparameters["lr"]) for r in runs] == [
        (name, lr) for name in ("adamw", "sgd") for lr in SWEEP_LRS
    ]
    assert all(r.hyperparameters["momentum"] == 0.0 for r in runs if r.optimizer == "sgd")
    assert all(r.hyperparameters["weight_decay"] == 0.01 for r in runs if r.optimizer == "adamw")
    read = client.get(f"/v1/jobs/{job_id}/sensitivity", headers=auth).json()
    assert read["metric"] == "val_accuracy" and read["seeds"] == 1
    assert [row["optimizer"] for row in read["optimizers"]] == ["adamw", "sgd"]
    for row in read["optimizers"]:
        assert [p["lr"] for p in row["points"]] == sorted(SWEEP_LRS)
        for point in row["points"]:
            stored = next(
                r
                for r in runs
                if r.optimizer == row["optimizer"] and r.hyperparameters["lr"] == point["lr"]
            )
            assert point["values"] == [stored.value] and point["mean"] == stored.value
    # the layout is fixed, and a sweep is no comparison
    patch = client.patch(f"/v1/jobs/{job_id}", json={"n_trials": 7}, headers=auth)
    assert patch.status_code == 409, patch.text
    assert client.get(f"/v1/jobs/{job_id}/comparison", headers=auth).status_code == 409


def test_sweep_slots_enumerate_optimizer_then_lr_then_seed() -> None:
    spec = {"mode": "sweep", "sweep": {"lrs": [0.1, 0.01], "seeds": 2}}
    resolved = sweep_space(["sgd", "adamw"], [0.1, 0.01]).model_dump(mode="json")
    layout = [sweep_role(spec, resolved, slot) for slot in range(8)]
    assert [(p[OPTIMIZER_PARAM], p[f"{p[OPTIMIZER_PARAM]}.lr"], seed) for p, seed in layout] == [
        (name, lr, seed) for name in ("adamw", "sgd") for lr in (0.1, 0.01) for seed in (0, 1)
    ]
    assert sweep_role({"mode": "tune"}, resolved, 0) is None
    with pytest.raises(ValueError, match="past the sweep"):
        sweep_role(spec, resolved, 8)
