"""End to end on real processes: submit over HTTP, trials on Celery workers, read back.

1. the embedded default (`optserve up`: SQLite + file-system broker);
2. PostgreSQL + Redis with two workers, trials overlapping in time;
3. a worker killed with SIGKILL mid-trial: the run is failed and retried once.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect

from tests.e2e.harness import Stack, embedded_up, wait_for
from tests.factories import example_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FINISHED = {"complete", "pruned"}
TERMINAL_TRIAL = {"complete", "pruned", "fail", "cancelled"}


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_done(self, job_id: str, stack: Stack, timeout: float = 300) -> dict[str, Any]:
        def done() -> Any:
            job = self.get(f"/v1/jobs/{job_id}")
            return job if job["status"] in ("completed", "failed", "cancelled") else None

        return wait_for(done, timeout, f"job {job_id} to finish", stack)  # type: ignore[no-any-return]

    def trials(self, job_id: str) -> list[dict[str, Any]]:
        return self.get(f"/v1/jobs/{job_id}/trials", limit=500)["items"]  # type: ignore[no-any-return]


def _in_space(value: Any, space: dict[str, Any]) -> bool:
    kind = space["type"]
    if kind == "fixed":
        return bool(value == space["value"])
    if kind == "categorical":
        return value in space["choices"]
    return bool(space["low"] - 1e-12 <= value <= space["high"] + 1e-12)


def check_finished_job(api: Api, job: dict[str, Any], n_trials: int, epochs: int) -> list[dict]:
    """The issue's checks: counts, ranges, curves, best == best completed trial."""
    assert job["status"] == "completed", job
    trials = api.trials(job["id"])
    assert all(t["state"] in TERMINAL_TRIAL for t in trials), trials
    finished = [t for t in trials if t["state"] in FINISHED]
    assert len(finished) == n_trials, trials
    spaces = job["resolved_space"]["optimizers"]
    for t in trials:
        optimizer = t["params"]["optimizer"]
        assert optimizer in spaces
        for hp, value in t["hyperparameters"].items():
            if hp in spaces[optimizer]:
                assert _in_space(value, spaces[optimizer][hp]), (t, hp, value)
    completed = [t for t in trials if t["state"] == "complete"]
    for t in completed:
        curve = api.get(f"/v1/jobs/{job['id']}/trials/{t['number']}/curve")
        assert [p["epoch"] for p in curve["points"]] == list(range(1, epochs + 1))
        assert curve["points"][-1]["val_metric"] == pytest.approx(t["value"])
    top = max(completed, key=lambda t: t["value"])
    best = api.get(f"/v1/jobs/{job['id']}/best")
    assert best["trial"] == top["number"]
    assert best["value"] == pytest.approx(top["value"])
    assert best["params"] == top["params"]
    assert job["best"]["trial"] == top["number"]
    return trials


def test_embedded_default_end_to_end(tmp_path: Path) -> None:
    with embedded_up(tmp_path) as (stack, key):
        api = Api(stack.url, key)
        job = api.submit(example_job(n_trials=6, max_parallel=2))
        assert job["status"] == "queued"
        done = api.wait_done(job["id"], stack)
        check_finished_job(api, done, n_trials=6, epochs=3)
        assert done["best"]["value"] > 0.9, done["best"]
        assert {t["device"] for t in api.trials(job["id"])} == {"cpu"}
    assert stack.procs["up"].returncode == 0, stack.logs()


def test_postgres_redis_two_workers_run_in_parallel(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    env = {
        "OPTSERVE_DATA_DIR": str(tmp_path / "data"),
        "OPTSERVE_DATABASE_URL": pg_url,
        "OPTSERVE_BROKER_URL": redis_url,
        "OPTSERVE_QUEUE": f"optserve.test.{uuid.uuid4().hex[:8]}",
    }
    stack = Stack(tmp_path, env)
    stack.run("db", "upgrade")
    # Optuna's tables exist before any worker starts: two workers creating them at
    # once on a fresh database raced (CREATE TYPE ... already exists) and lost a trial
    engine = create_engine(pg_url)
    assert "studies" in inspect(engine).get_table_names(schema="optuna")
    engine.dispose()
    key = stack.run("keys", "create", "--tenant", "pg-tenant").strip()
    try:
        stack.start("api", "api")
        stack.start("worker1", "worker", "--name", "w1@%h")
        stack.start("worker2", "worker", "--name", "w2@%h")
        stack.start("reconciler", "reconciler")
        stack.wait_healthy()
        for name in ("worker1", "worker2"):  # both consuming before the first publish
            stack.wait_log(name, " ready.")
        api = Api(stack.url, key)
        body = example_job(n_trials=6, max_parallel=2)
        body["task"]["epochs"] = 4  # type: ignore[index]
        job = api.submit(body)
        done = api.wait_done(job["id"], stack)
        trials = check_finished_job(api, done, n_trials=6, epochs=4)
    finally:
        stack.stop()
    spans = sorted((t["started_at"], t["finished_at"]) for t in trials)
    overlaps = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    assert overlaps >= 1, f"no two trials overlapped in time: {spans}\n{stack.logs()}"


def _running_trial_pid(db: Path) -> int | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT r.worker FROM trial_runs r JOIN curve_points c ON c.trial_id = r.id "
            "WHERE r.state = 'running' LIMIT 1"
        ).fetchone()
    return int(row[0].rsplit(":", 1)[1]) if row else None


def test_worker_killed_mid_trial_is_failed_and_retried_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with embedded_up(tmp_path) as (stack, key):
        api = Api(stack.url, key)
        body = example_job(n_trials=3, max_parallel=1)
        body["task"]["epochs"] = 40  # type: ignore[index]
        job = api.submit(body)
        pid = wait_for(
            lambda: _running_trial_pid(data / "optserve.db"), 120, "a running trial", stack
        )
        os.kill(pid, signal.SIGKILL)
        done = api.wait_done(job["id"], stack, timeout=400)
    assert done["status"] == "completed", stack.logs()
    trials = _trials_from_db(data / "optserve.db")  # the API is stopped by now
    failed = [t for t in trials if t["state"] == "fail"]
    assert len(failed) == 1, trials
    assert "worker lost" in failed[0]["failure_reason"]
    retries = [t for t in trials if t["slot"] == failed[0]["slot"] and t["attempt"] == 2]
    assert len(retries) == 1 and retries[0]["state"] in FINISHED, trials
    assert sum(t["state"] in FINISHED for t in trials) == 3


def _trials_from_db(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT slot, attempt, state, failure_reason FROM trial_runs"
        ).fetchall()
    return [dict(r) for r in rows]
