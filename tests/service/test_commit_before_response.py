"""A 202 means committed and queued: the request's unit of work ends before the response.

FastAPI runs a ``yield`` dependency's exit code after the response by default; ours is
scoped to the endpoint function so that a client never holds a job id whose row, or
whose first trial's message, does not exist yet (ARCHITECTURE rule 1). A real server is
needed: the test client waits for the whole ASGI call, exit code included.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from service.db import session_scope
from service.dispatch import DispatchBuffer
from service.models import Job, TrialSlot
from tests.e2e.harness import free_port
from tests.factories import example_job


@pytest.fixture
def server(sqlite_env: dict[str, str]) -> Iterator[str]:
    from service.app import create_app

    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(create_app(), port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield url
    instance.should_exit = True
    thread.join(timeout=10)


def test_a_202_job_is_committed_and_its_trials_queued(
    server: str, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_flush = DispatchBuffer.flush

    def slow_flush(self: DispatchBuffer) -> None:  # a broker that takes its time
        time.sleep(0.5)
        real_flush(self)

    monkeypatch.setattr(DispatchBuffer, "flush", slow_flush)
    response = httpx.post(f"{server}/v1/jobs", json=example_job(), headers=auth, timeout=30)
    assert response.status_code == 202, response.text
    job_id = uuid.UUID(response.json()["id"])
    with session_scope() as session:  # right after the response, from another session
        assert session.get(Job, job_id) is not None
        statuses = session.scalars(select(TrialSlot.status).where(TrialSlot.job_id == job_id))
        assert "dispatched" in set(statuses)
