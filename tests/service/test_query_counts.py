"""The dashboard's reads cost a constant number of SQL statements (no N+1).

Statements are counted with a ``before_cursor_execute`` listener on the real engine
while a request is served: a job with 200 trials must cost what one with 5 costs,
and a page of 8 jobs what a page of 1 costs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.db import get_engine
from service.models import TrialState
from tests.conftest import apply_env
from tests.factories import make_key
from tests.service.trial_rows import add_runs, submit


@contextmanager
def counting() -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def statements_for(client: TestClient, auth: dict[str, str], path: str) -> int:
    with counting() as statements:
        response = client.get(path, headers=auth)
    assert response.status_code == 200, response.text
    return len(statements)


def job_with(client: TestClient, auth: dict[str, str], n: int) -> uuid.UUID:
    job_id = submit(client, auth)
    # some pruned and failed runs too: every state takes part in the counts
    state = lambda i: [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL][i % 3]  # noqa: E731
    add_runs(job_id, n, points=4, state=state)
    return job_id


JOB_READS = [
    "/v1/jobs/{id}",
    "/v1/jobs/{id}/best",
    "/v1/jobs/{id}/trials?limit=500",
    "/v1/jobs/{id}/curves?limit=500",
    "/v1/jobs/{id}/curves?limit=50&offset=2",
]


def test_job_reads_do_not_grow_with_trials(client: TestClient, auth: dict[str, str]) -> None:
    small, large = job_with(client, auth, 5), job_with(client, auth, 200)
    for path in JOB_READS:
        n_small = statements_for(client, auth, path.format(id=small))
        n_large = statements_for(client, auth, path.format(id=large))
        assert n_small == n_large, (path, n_small, n_large)
        assert n_large <= 6, (path, n_large)  # auth, job, and a few aggregate queries


def test_jobs_list_does_not_grow_with_jobs(client: TestClient, auth: dict[str, str]) -> None:
    job_with(client, auth, 6)
    one = statements_for(client, auth, "/v1/jobs")
    for _ in range(7):
        job_with(client, auth, 6)
    eight = statements_for(client, auth, "/v1/jobs")
    assert one == eight, (one, eight)
    listed = client.get("/v1/jobs", headers=auth).json()
    assert listed["total"] == 8
    assert all(job["best"] is not None for job in listed["items"])


def test_listener_counts_statements(client: TestClient, auth: dict[str, str]) -> None:
    """The counter itself can tell a per-trial loop from a constant cost."""
    job_id = job_with(client, auth, 5)
    with counting() as statements:
        for number in range(5):
            client.get(f"/v1/jobs/{job_id}/trials/{number}/curve", headers=auth)
    per_request = statements_for(client, auth, f"/v1/jobs/{job_id}/trials/0/curve")
    assert len(statements) == 5 * per_request


@pytest.fixture(params=["sqlite", "postgres"])
def db_client(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app on SQLite or PostgreSQL (their NaN, infinity and window functions differ)."""
    from service.app import create_app
    from service.migrate import upgrade

    env = {"OPTSERVE_DATA_DIR": str(data_dir), "OPTSERVE_ENV": "testing"}
    if request.param == "postgres":
        env["OPTSERVE_DATABASE_URL"] = request.getfixturevalue("pg_url")
    apply_env(monkeypatch, env)
    upgrade()
    with TestClient(create_app()) as client:
        yield client, {"Authorization": f"Bearer {make_key('tenant-a')}"}
    apply_env(monkeypatch, {})


class TestBestIsTheRowTheRulesPick:
    """The one-query best (and the page's window-function best) agree with the rules:
    the job's direction, finite values first, the earliest trial on a tie."""

    def test_maximize_and_minimize_side_by_side(
        self, db_client: tuple[TestClient, dict[str, str]]
    ) -> None:
        client, auth = db_client
        values = [0.5, 0.9, 0.9, 0.1, 0.7]
        up = submit(client, auth)  # example_job maximises val_accuracy
        down_task = {**_example_task(), "metric": "val_loss", "direction": "minimize"}
        down = submit(client, auth, task=down_task)
        add_runs(up, 5, value=lambda i, _p: values[i])
        add_runs(down, 5, value=lambda i, _p: values[i])
        assert client.get(f"/v1/jobs/{up}/best", headers=auth).json()["trial"] == 1
        assert client.get(f"/v1/jobs/{down}/best", headers=auth).json()["trial"] == 3
        items = client.get("/v1/jobs", headers=auth).json()["items"]
        assert {j["id"]: j["best"]["trial"] for j in items} == {str(up): 1, str(down): 3}

    def test_non_finite_values_come_last(
        self, db_client: tuple[TestClient, dict[str, str]]
    ) -> None:
        client, auth = db_client
        job_id = submit(client, auth)
        values = [float("inf"), 0.2, float("nan"), 0.3, float("-inf")]
        add_runs(job_id, 5, value=lambda i, _p: values[i])
        best = client.get(f"/v1/jobs/{job_id}/best", headers=auth).json()
        assert (best["trial"], best["value"]) == (3, 0.3)
        job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        assert job["best"]["trial"] == 3
        assert job["counts"]["complete"] == 5


def _example_task() -> dict[str, Any]:
    from tests.factories import example_job

    task = example_job()["task"]
    assert isinstance(task, dict)
    return dict(task)
