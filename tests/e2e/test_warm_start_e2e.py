"""A warm-started job on real processes (`optserve up`, embedded): it runs past optima first.

A cold job really runs (a ``compare`` job, so that both optimizers complete a trial),
then a job ``warm_start: {from: [that job], k: 2}``: its first two trials carry the
enqueued configurations exactly, with their source on our trial and in Optuna's user
attrs; the third is sampled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest

from tests.e2e.harness import Stack, embedded_up, wait_for
from tests.factories import example_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _client(stack: Stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _submit(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def _wait_done(http: httpx.Client, job_id: str, stack: Stack) -> dict[str, Any]:
    def done() -> Any:
        job = http.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(done, 300, f"job {job_id} to finish", stack)  # type: ignore[no-any-return]


def test_warm_started_job_runs_the_past_optima_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    task = {**example_job()["task"], "epochs": 1}  # type: ignore[dict-item]
    with embedded_up(tmp_path) as (stack, key):
        http = _client(stack, key)
        cold = _submit(http, example_job(task=task, mode="compare", n_trials=2, max_parallel=1))
        assert _wait_done(http, cold["id"], stack)["status"] == "completed", stack.logs()
        warm_body = example_job(
            task=task, n_trials=3, max_parallel=1, warm_start={"from": [cold["id"]], "k": 2}
        )
        job = _submit(http, warm_body)
        configs = job["resolved_space"]["warm_start"]["configurations"]
        assert len(configs) == 2
        done = _wait_done(http, job["id"], stack)
        trials = http.get(f"/v1/jobs/{job['id']}/trials", params={"limit": 50}).json()["items"]
    assert done["status"] == "completed", stack.logs()
    trials.sort(key=lambda t: t["number"])
    # one slot at a time: slot i asks right after enqueueing configuration i
    for trial, config in zip(trials, configs, strict=False):
        assert trial["params"] == config["params"], (trial, config)
        assert trial["source"] == config["source"]
        assert config["source"]["job_id"] == cold["id"]
    assert trials[2]["source"] is None
    assert {c["params"]["optimizer"] for c in configs} == {"sgd", "adamw"}

    storage = f"sqlite:///{data / 'optuna.db'}"
    study = optuna.load_study(study_name=f"job-{job['id']}", storage=storage)
    by_number = {t.number: t for t in study.trials}
    for number, config in enumerate(configs):
        assert by_number[number].user_attrs["optserve.source"] == config["source"]
        assert by_number[number].params == config["params"]
    assert "optserve.source" not in by_number[2].user_attrs
