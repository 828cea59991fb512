"""Quality against cost: train_time and peak_memory as objectives (issue 4, multi-objective)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import example_job
from workers.trial_runner import run_trial


def _run_job(client: TestClient, auth: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=example_job(**overrides), headers=auth)
    assert response.status_code == 202, response.text
    job = response.json()
    for slot in range(job["spec"]["n_trials"]):
        run_trial(job["id"], slot, "w1")
    return job  # type: ignore[no-any-return]


def _curve_metrics(client: TestClient, auth: dict[str, str], job_id: str) -> list[dict]:
    trials = client.get(f"/v1/jobs/{job_id}/trials", headers=auth).json()["items"]
    return [
        client.get(f"/v1/jobs/{job_id}/trials/{t['number']}/curve", headers=auth).json()["points"][
            -1
        ]["metrics"]
        for t in trials
    ]


def test_pareto_of_loss_against_training_time(client: TestClient, auth: dict[str, str]) -> None:
    job = _run_job(
        client,
        auth,
        n_trials=3,
        max_parallel=1,
        objectives=[
            {"metric": "val_loss", "direction": "minimize"},
            {"metric": "train_time", "direction": "minimize"},
        ],
        sampler={"name": "nsga2"},
    )
    front = client.get(f"/v1/jobs/{job['id']}/pareto", headers=auth).json()
    assert [o["metric"] for o in front["objectives"]] == ["val_loss", "train_time"]
    assert front["trials"]
    for trial in front["trials"]:
        assert trial["values"]["train_time"] > 0
    for metrics in _curve_metrics(client, auth, job["id"]):
        assert metrics["train_time"] > 0 and metrics["peak_memory"] > 0


def test_peak_memory_counts_the_optimizer_state(client: TestClient, auth: dict[str, str]) -> None:
    """On CPU: parameters + gradients + state, so AdEMAMix (3 buffers) > plain SGD (none)."""
    memory = {}
    spaces = {"sgd": {"lr": 1e-3, "momentum": 0.0}, "ademamix": {"lr": 1e-3}}
    for name, space in spaces.items():
        job = _run_job(
            client,
            auth,
            n_trials=1,
            max_parallel=1,
            search_space={"optimizers": {name: space}},
        )
        (metrics,) = _curve_metrics(client, auth, job["id"])
        memory[name] = metrics["peak_memory"]
    weights_and_grads = memory["sgd"]  # 2 x the parameter bytes
    # + m1, m2 and nu (3 x the parameter bytes) + one 4-byte step counter per tensor
    n_tensors = 6  # mlp of depth 2: three linear layers, weight and bias each
    assert memory["ademamix"] == weights_and_grads * 5 // 2 + 4 * n_tensors
