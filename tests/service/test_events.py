"""The job event stream: recording (``service.events.recorder``) and ``GET /v1/jobs/{id}/events``.

In-process on SQLite, trials run by ``run_trial`` as a worker would; the numbering under
concurrent writers is checked on PostgreSQL, where writers really run in parallel.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api_schemas.events import EventRead
from service.db import session_scope
from service.events import recorder
from service.events import repository as events_repo
from service.models import Job, JobEvent
from tests.conftest import apply_env
from tests.e2e.harness import wait_for
from tests.factories import example_job, make_key
from tests.workers.test_trial_runner import _die_mid_trial
from workers import reconcile
from workers.optuna_storage import get_storage
from workers.trial_runner import run_trial

TASK = {
    "model": {"name": "mlp", "params": {"width": 16}},
    "dataset": {"name": "digits"},
    "epochs": 2,
    "batch_size": 128,
    "metric": "val_accuracy",
    "direction": "maximize",
    "seed": 0,
}
SPACE = {"optimizers": {"sgd": {"lr": 0.1}}}


# -- an SSE reader (also used by tests/e2e/test_events_e2e.py) -------------------------------
@dataclass
class Frame:
    """One SSE message, or one comment (``: keep-alive``) when ``comment`` is set."""

    id: int | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    comment: str | None = None
    fields: list[str] = field(default_factory=list)


def frames(lines: Iterable[str]) -> Iterator[Frame]:
    """Parse SSE lines into frames; a frame ends at a blank line."""
    current = Frame()
    for line in lines:
        if line == "":
            if current.fields or current.comment is not None:
                yield current
            current = Frame()
        elif line.startswith(":"):
            current.comment = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current.fields.append(name)
            if name == "id":
                current.id = int(value)
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data = json.loads(value)


def events_of(text: str) -> list[Frame]:
    return [f for f in frames(text.split("\n")) if f.comment is None]


# -- helpers ----------------------------------------------------------------------------------
def submit(client: TestClient, auth: dict[str, str], **overrides: Any) -> uuid.UUID:
    body = example_job(task=TASK, search_space=SPACE, n_trials=2, max_parallel=1)
    body.update(overrides)
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


def finished_job(client: TestClient, auth: dict[str, str]) -> uuid.UUID:
    """A job of two trials, run to the end in-process."""
    job_id = submit(client, auth)
    assert run_trial(str(job_id), 0, "w1").endswith("complete")
    assert run_trial(str(job_id), 1, "w1").endswith("complete")
    return job_id


def backlog(client: TestClient, auth: dict[str, str], job_id: uuid.UUID, **params: Any) -> str:
    response = client.get(
        f"/v1/jobs/{job_id}/events", params={"follow": "false", **params}, headers=auth
    )
    assert response.status_code == 200, response.text
    return response.text


def stored_types(job_id: uuid.UUID) -> list[str]:
    with session_scope() as session:
        stmt = select(JobEvent.type).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        return list(session.scalars(stmt))


def stored_seqs(job_id: uuid.UUID) -> list[int]:
    with session_scope() as session:
        stmt = select(JobEvent.seq).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        return list(session.scalars(stmt))


# -- the stream of a real job ---------------------------------------------------------------
class TestBacklog:
    def test_every_event_of_a_finished_job_in_order(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job_id = finished_job(client, auth)
        response = client.get(f"/v1/jobs/{job_id}/events?follow=false", headers=auth)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events = events_of(response.text)
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        per_trial = ["trial.started", "trial.epoch", "trial.epoch", "trial.finished"]
        assert [e.event for e in events] == ["job.started", *per_trial, *per_trial, "job.finished"]
        for e in events:
            assert e.data is not None
            read = EventRead.model_validate(e.data)
            assert (read.seq, read.type, read.job_id) == (e.id, e.event, job_id)
            assert e.data["at"].endswith("Z")
        trials = client.get(f"/v1/jobs/{job_id}/trials", headers=auth).json()["items"]
        finished = [e.data for e in events if e.event == "trial.finished" and e.data]
        assert [(d["trial"], d["state"], d["value"]) for d in finished] == [
            (t["number"], t["state"], t["value"]) for t in trials
        ]
        epochs = [e.data for e in events if e.event == "trial.epoch" and e.data]
        assert [(d["trial"], d["epoch"]) for d in epochs] == [(0, 1), (0, 2), (1, 1), (1, 2)]
        curve = client.get(f"/v1/jobs/{job_id}/trials/0/curve", headers=auth).json()
        assert epochs[1]["value"] == pytest.approx(curve["points"][-1]["val_metric"])
        started = next(e.data for e in events if e.event == "trial.started" and e.data)
        assert started["optimizer"] == "sgd" and started["hyperparameters"]["lr"] == 0.1
        job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        last = events[-1].data
        assert last is not None
        assert (last["status"], last["best_value"]) == ("completed", job["best"]["value"])

    def test_following_a_finished_job_ends_after_job_finished(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job_id = finished_job(client, auth)
        followed = client.get(f"/v1/jobs/{job_id}/events", headers=auth).text
        assert events_of(followed) == events_of(backlog(client, auth, job_id))
        # resuming after the last event: nothing more will come, so it closes at once
        last = events_of(followed)[-1].id
        again = client.get(
            f"/v1/jobs/{job_id}/events", headers={**auth, "Last-Event-ID": str(last)}
        )
        assert again.status_code == 200 and events_of(again.text) == []


class TestResume:
    def test_last_event_id_resumes_exactly_after_it(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job_id = finished_job(client, auth)
        every = events_of(backlog(client, auth, job_id))
        for n in (0, 1, 5, len(every) - 1, len(every)):
            response = client.get(
                f"/v1/jobs/{job_id}/events?follow=false",
                headers={**auth, "Last-Event-ID": str(n)},
            )
            assert [e.id for e in events_of(response.text)] == [e.id for e in every[n:]]
        by_query = events_of(backlog(client, auth, job_id, last_event_id=3))
        assert [e.id for e in by_query] == [e.id for e in every[3:]]

    def test_the_header_wins_over_the_query(self, client: TestClient, auth: dict[str, str]) -> None:
        # EventSource reconnects to the same URL and sends what it last received as a header
        job_id = finished_job(client, auth)
        response = client.get(
            f"/v1/jobs/{job_id}/events?follow=false&last_event_id=1",
            headers={**auth, "Last-Event-ID": "4"},
        )
        assert events_of(response.text)[0].id == 5

    @pytest.mark.parametrize(
        ("headers", "query", "loc"),
        [
            ({"Last-Event-ID": "abc"}, "", ["header", "Last-Event-ID"]),
            ({"Last-Event-ID": "-1"}, "", ["header", "Last-Event-ID"]),
            ({}, "?last_event_id=1.5", ["query", "last_event_id"]),
            ({}, "?follow=maybe", ["query", "follow"]),
        ],
    )
    def test_malformed_cursor_is_422_naming_the_field(
        self,
        client: TestClient,
        auth: dict[str, str],
        headers: dict[str, str],
        query: str,
        loc: list[str],
    ) -> None:
        job_id = submit(client, auth)
        response = client.get(f"/v1/jobs/{job_id}/events{query}", headers={**auth, **headers})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc


class TestTenancy:
    def test_another_tenants_job_is_404(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        response = client.get(f"/v1/jobs/{job_id}/events?follow=false", headers=other)
        assert response.status_code == 404
        assert response.json()["detail"][0]["loc"] == ["path", "job_id"]

    def test_unknown_job_is_404_and_no_key_is_401(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        missing = client.get(f"/v1/jobs/{uuid.uuid4()}/events?follow=false", headers=auth)
        assert missing.status_code == 404
        job_id = submit(client, auth)
        assert client.get(f"/v1/jobs/{job_id}/events?follow=false").status_code == 401


class TestLiveStream:
    def test_keep_alive_while_idle_then_cancel_ends_the_stream(
        self, client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from service.config import get_settings

        monkeypatch.setenv("OPTSERVE_EVENTS_HEARTBEAT_S", "0.05")
        monkeypatch.setenv("OPTSERVE_EVENTS_POLL_S", "0.02")
        get_settings.cache_clear()
        job_id = submit(client, auth)  # queued: no worker runs it, the stream is idle
        seen: list[Frame] = []
        cancelled = threading.Event()

        def cancel_once_kept_alive() -> None:
            deadline = time.monotonic() + 10
            while not any(f.comment == "keep-alive" for f in seen):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            client.post(f"/v1/jobs/{job_id}/cancel", headers=auth).raise_for_status()
            cancelled.set()

        canceller = threading.Thread(target=cancel_once_kept_alive)
        canceller.start()
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth) as response:
            for frame in frames(response.iter_lines()):
                seen.append(frame)
        canceller.join(timeout=10)
        assert cancelled.is_set()
        kinds = [f.event or f": {f.comment}" for f in seen]
        assert kinds[-2:] == ["job.cancel_requested", "job.finished"], kinds
        assert ": keep-alive" in kinds[: kinds.index("job.cancel_requested")]
        assert seen[-1].data is not None and seen[-1].data["status"] == "cancelled"

    def test_patch_is_an_event(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        patched = client.patch(f"/v1/jobs/{job_id}", json={"n_trials": 5}, headers=auth)
        assert patched.status_code == 200, patched.text
        (event,) = events_of(backlog(client, auth, job_id))
        assert (event.event, event.data and event.data["n_trials"]) == ("job.updated", 5)
        assert event.data is not None and event.data["max_parallel"] == 1


class TestRecorder:
    def test_a_lost_worker_is_a_failed_trial_event(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job_id = submit(client, auth, n_trials=1)
        run = _die_mid_trial(job_id, 0)
        reconcile.reconcile_once()
        events = events_of(backlog(client, auth, job_id))
        finished = [e.data for e in events if e.event == "trial.finished"]
        assert len(finished) == 1 and finished[0] is not None
        assert finished[0]["trial"] == run.number and finished[0]["state"] == "fail"
        assert "worker lost" in finished[0]["reason"]
        reconcile.reconcile_once()  # nothing new is reaped: no second event
        assert len(events_of(backlog(client, auth, job_id))) == len(events)

    def test_non_finite_floats_become_null_and_types_are_checked(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job_id = submit(client, auth)
        with session_scope() as session:
            payload = {"trial": 0, "value": math.nan, "metrics": {"loss": math.inf}}
            assert recorder.emit(session, job_id, "trial.epoch", payload, trial_number=0) == 1
            with pytest.raises(ValueError, match="unknown event type"):
                recorder.emit(session, job_id, "trial.exploded", {})
        (event,) = events_of(backlog(client, auth, job_id))
        assert event.data is not None
        assert event.data["value"] is None and event.data["metrics"] == {"loss": None}


# -- PostgreSQL: writers in parallel --------------------------------------------------------
@pytest.fixture
def pg_client(pg_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from service.app import create_app
    from service.migrate import upgrade

    env = {
        "OPTSERVE_DATA_DIR": str(data_dir),
        "OPTSERVE_DATABASE_URL": pg_url,
        "OPTSERVE_ENV": "testing",
    }
    apply_env(monkeypatch, env)
    upgrade()
    with TestClient(create_app()) as test_client:
        yield test_client
    apply_env(monkeypatch, {})


@pytest.mark.postgres
def test_concurrent_emits_on_postgres_are_numbered_and_committed_in_order(
    pg_client: TestClient,
) -> None:
    auth = {"Authorization": f"Bearer {make_key('pg-tenant')}"}
    job_id = submit(pg_client, auth)
    writers, per_writer = 8, 25
    total = writers * per_writer
    errors: list[BaseException] = []
    read: list[int] = []
    done = threading.Event()

    def write(w: int) -> None:
        try:
            for i in range(per_writer):
                with session_scope() as session:
                    recorder.emit(session, job_id, "trial.epoch", {"trial": w, "epoch": i})
                    time.sleep(0.001)  # hold the transaction open: writers overlap
        except BaseException as exc:
            errors.append(exc)

    def follow() -> None:
        # a reader that resumes after the last seq it saw, as a stream does: if events
        # committed out of seq order, it would skip one for good
        try:
            while not done.is_set() or len(read) < total:
                with session_scope() as session:
                    batch = events_repo.events_after(session, job_id, read[-1] if read else 0, 50)
                read.extend(e.seq for e in batch)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=follow)
    reader.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    reader.join(timeout=30)
    assert not errors, errors
    assert stored_seqs(job_id) == list(range(1, total + 1))
    assert read == list(range(1, total + 1))
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.event_seq == total
        stmt = select(JobEvent.payload).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        epochs = session.scalars(stmt)
        by_writer: dict[int, list[int]] = {}
        for payload in epochs:
            by_writer.setdefault(payload["trial"], []).append(payload["epoch"])
    assert all(v == list(range(per_writer)) for v in by_writer.values())
    # the endpoint reads the same on PostgreSQL
    text = backlog(pg_client, auth, job_id)
    assert [e.id for e in events_of(text)] == list(range(1, total + 1))
    resumed = backlog(pg_client, auth, job_id, last_event_id=total - 3)
    assert [e.id for e in events_of(resumed)] == [total - 2, total - 1, total]


@pytest.mark.postgres
def test_parallel_trials_and_a_patch_on_postgres_keep_every_trial_in_order(
    pg_client: TestClient,
) -> None:
    """Two workers' trials and the API write one job's stream at once (real code paths):
    no deadlock, no gap, and each trial's events in order."""
    auth = {"Authorization": f"Bearer {make_key('pg-tenant')}"}
    job_id = submit(pg_client, auth, n_trials=2, max_parallel=2)
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            assert run_trial(str(job_id), slot, f"w{slot}").endswith("complete")
        except BaseException as exc:
            errors.append(exc)

    get_storage()  # Optuna's tables first, as `optserve db upgrade` makes them in production
    workers = [threading.Thread(target=work, args=(slot,)) for slot in (0, 1)]
    for t in workers:
        t.start()
    wait_for(lambda: "trial.epoch" in stored_types(job_id), 60, "a first epoch")
    patched = pg_client.patch(f"/v1/jobs/{job_id}", json={"max_parallel": 1}, headers=auth)
    assert patched.status_code in (200, 409), patched.text  # 409: both trials already ended
    for t in workers:
        t.join(timeout=120)
    assert not errors, errors
    events = events_of(backlog(pg_client, auth, job_id))
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    kinds = [e.event for e in events]
    assert kinds[0] == "job.started" and kinds[-1] == "job.finished"
    assert kinds.count("job.updated") == (1 if patched.status_code == 200 else 0), patched.text
    for trial in (0, 1):
        mine = [e for e in events if e.data and e.data.get("trial") == trial]
        assert [e.event for e in mine] == [
            "trial.started",
            "trial.epoch",
            "trial.epoch",
            "trial.finished",
        ]


@pytest.mark.postgres
@pytest.mark.parametrize("act", ["update", "cancel"])
def test_a_job_that_ends_after_the_request_read_it_gets_nothing_after_job_finished(
    pg_client: TestClient, act: str
) -> None:
    """PATCH and cancel read the job, then lock it: they must judge the locked row."""
    from api_schemas.jobs import JobUpdate
    from service.errors import Conflict
    from service.jobs import lifecycle
    from service.jobs import service as job_service

    auth = {"Authorization": f"Bearer {make_key('pg-tenant')}"}
    job_id = submit(pg_client, auth)
    with session_scope() as request:
        job = job_service.get(request, _subject(job_id), job_id)  # read, not locked yet
        assert job.status == "queued"
        with session_scope() as other:  # meanwhile the job is cancelled and ends
            lifecycle.request_cancel(other, job_id)
        if act == "update":
            with pytest.raises(Conflict):
                job_service.update(request, _subject(job_id), job_id, JobUpdate(max_parallel=2))
        else:
            job_service.cancel(request, _subject(job_id), job_id)
    kinds = [e.event for e in events_of(backlog(pg_client, auth, job_id))]
    assert kinds == ["job.cancel_requested", "job.finished"]


def _subject(job_id: uuid.UUID) -> Any:
    from service.auth import AuthSubject

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return AuthSubject(job.tenant_id, uuid.uuid4(), frozenset({"jobs:read", "jobs:write"}))
