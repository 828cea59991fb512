"""``GET /metrics``: Prometheus text that matches the database, on SQLite and PostgreSQL.

Rows are written the way the service writes them (jobs through the API, slot claims
and heartbeats through the trials repository, finished runs through ``finish_run``);
the scrape is parsed with prometheus_client's own parser and compared with counts
read back from the tables.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from service.db import session_scope
from service.metrics import DURATION_BUCKETS
from service.models import Job, SlotStatus, TrialRun, TrialSlot, TrialState, WorkerPresence
from service.models._types import utcnow
from service.trials import repository as trials
from tests.conftest import apply_env
from tests.e2e.harness import Stack, wait_for
from tests.factories import make_key
from tests.service.trial_rows import add_runs, submit
from workers import presence

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(params=["sqlite", "postgres"])
def ops_client(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> Iterator[TestClient]:
    from service.app import create_app
    from service.migrate import upgrade

    env = {"OPTSERVE_DATA_DIR": str(data_dir), "OPTSERVE_ENV": "testing"}
    if request.param == "postgres":
        env["OPTSERVE_DATABASE_URL"] = request.getfixturevalue("pg_url")
    apply_env(monkeypatch, env)
    upgrade()
    with TestClient(create_app()) as client:
        yield client
    apply_env(monkeypatch, {})


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def populate(client: TestClient) -> tuple[uuid.UUID, uuid.UUID]:
    auth = {"Authorization": f"Bearer {make_key('tenant-a')}"}
    busy_job, idle_job = submit(client, auth), submit(client, auth)  # 6 slots, 2 dispatched
    durations = [3.0, 20.0, 4000.0, 0.5, 61.0]
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    add_runs(
        busy_job, 5, duration_s=lambda i: durations[i], state=lambda i: states[i % len(states)]
    )
    with session_scope() as session:
        assert trials.claim_slot(session, busy_job, 0, "host:1") == 1
        assert trials.claim_slot(session, busy_job, 1, "host:2") == 1
        assert trials.claim_slot(session, idle_job, 0, "host:1") == 1  # host:1 holds two slots
        # host:2's slot went silent long ago: stale, not a busy worker
        session.execute(
            update(TrialSlot)
            .where(TrialSlot.job_id == busy_job, TrialSlot.slot == 1)
            .values(heartbeat_at=utcnow() - dt.timedelta(hours=1))
        )
        session.execute(update(Job).where(Job.id == idle_job).values(status="cancelled"))
        # two worker processes said they were alive; node-b went silent an hour ago
        presence.beat(session, "node-a@host", concurrency=2)
        presence.beat(session, "node-b@host", concurrency=4)
        session.execute(
            update(WorkerPresence)
            .where(WorkerPresence.name == "node-b@host")
            .values(heartbeat_at=utcnow() - dt.timedelta(hours=1))
        )
    return busy_job, idle_job


def test_scrape_matches_the_database(ops_client: TestClient) -> None:
    jobs = populate(ops_client)
    samples = scrape(ops_client)
    with session_scope() as session:
        job_status = Counter(session.scalars(select(Job.status)))
        slot_status = Counter(session.scalars(select(TrialSlot.status)))
        runs = session.scalars(select(TrialRun)).all()
    assert sample(samples, "optserve_database_up") == 1
    assert sample(samples, "optserve_jobs", status="queued") == job_status["queued"] == 1
    assert sample(samples, "optserve_jobs", status="cancelled") == 1
    assert sample(samples, "optserve_jobs", status="completed") == 0
    for status in SlotStatus:
        assert sample(samples, "optserve_trial_slots", status=status) == slot_status[status]
    assert (
        sample(samples, "optserve_queue_depth")
        == 12 - 3
        == (slot_status["queued"] + slot_status["dispatched"])
    )
    assert sample(samples, "optserve_workers_busy") == 1  # host:1 (two slots), not host:2
    assert sample(samples, "optserve_workers") == 1  # node-a, not the silent node-b
    assert sample(samples, "optserve_worker_capacity") == 2
    assert sample(samples, "optserve_trials_stale") == 1
    by_state_optimizer = Counter((r.state, r.optimizer) for r in runs)
    for (state, optimizer), n in by_state_optimizer.items():
        assert sample(samples, "optserve_trials", state=state, optimizer=optimizer) == n
    # the histogram: cumulative buckets from finished_at - started_at
    for (state, optimizer), _ in by_state_optimizer.items():
        seconds = [
            (r.finished_at - r.started_at).total_seconds()  # type: ignore[operator]
            for r in runs
            if (r.state, r.optimizer) == (state, optimizer)
        ]
        labels = {"state": state, "optimizer": optimizer}
        name = "optserve_trial_duration_seconds"
        for bound in DURATION_BUCKETS:
            expected = sum(s <= bound for s in seconds)
            assert sample(samples, f"{name}_bucket", le=f"{bound:g}", **labels) == expected
        assert sample(samples, f"{name}_bucket", le="+Inf", **labels) == len(seconds)
        assert sample(samples, f"{name}_count", **labels) == len(seconds)
        assert sample(samples, f"{name}_sum", **labels) == pytest.approx(sum(seconds), abs=1e-3)
    # aggregates only: nothing identifies a tenant or a job
    text = ops_client.get("/metrics").text
    assert not any(str(job_id) in text for job_id in jobs)
    assert "tenant" not in text and "digits-mlp" not in text


def test_empty_database_reports_zeros(ops_client: TestClient) -> None:
    samples = scrape(ops_client)
    assert sample(samples, "optserve_queue_depth") == 0
    assert sample(samples, "optserve_workers_busy") == 0
    assert sample(samples, "optserve_workers") == 0
    assert sample(samples, "optserve_jobs", status="running") == 0


def test_unreachable_database_is_a_zero_not_a_500(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    from service.app import create_app

    apply_env(
        monkeypatch,
        {
            "OPTSERVE_DATA_DIR": str(data_dir),
            "OPTSERVE_ENV": "testing",
            "OPTSERVE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
        },
    )
    try:
        with TestClient(create_app()) as client:
            samples = scrape(client)
    finally:
        apply_env(monkeypatch, {})
    assert sample(samples, "optserve_database_up") == 0
    assert not any(name == "optserve_jobs" for name, _ in samples)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_real_worker_is_counted_while_it_runs(
    sqlite_env: dict[str, str], client: TestClient, tmp_path: Path
) -> None:
    """An idle Celery worker shows up in ``optserve_workers`` and leaves on shutdown."""
    stack = Stack(tmp_path, sqlite_env)
    stack.start("worker", "worker")
    try:
        wait_for(lambda: sample(scrape(client), "optserve_workers") == 1, 90, "worker", stack)
        samples = scrape(client)
        assert sample(samples, "optserve_worker_capacity") == 1
        assert sample(samples, "optserve_workers_busy") == 0
    finally:
        stack.stop()
    assert sample(scrape(client), "optserve_workers") == 0, stack.logs()
