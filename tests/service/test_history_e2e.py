"""``optserve seed-history --url``: the tiny suite through a real stack (API, worker,
reconciler as processes), then the jobs are finished, fingerprinted and shared."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from service.history.suite import get_suite
from tests.e2e.harness import embedded_up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_seed_history_through_the_api(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with embedded_up(tmp_path) as (stack, key):
        out = stack.run("seed-history", "--suite", "tiny", "--url", stack.url, "--key", key)
    suite = get_suite("tiny")
    assert f"{len(suite.tasks)}/{len(suite.tasks)} jobs completed (shared)" in out, stack.logs()
    with sqlite3.connect(data / "optserve.db") as db:
        rows = db.execute("SELECT name, status, shared, fingerprint FROM jobs").fetchall()
        n_runs = db.execute("SELECT count(*) FROM trial_runs WHERE state = 'complete'").fetchone()
    assert sorted(r[0] for r in rows) == sorted(t.job_name for t in suite.tasks)
    assert {(r[1], r[2]) for r in rows} == {("completed", 1)}
    assert all(json.loads(r[3])["model"] for r in rows)
    assert n_runs[0] == len(suite.tasks) * suite.n_trials
