"""Enqueue after commit (ARCHITECTURE rule 1; RELIABILITY R4, R5)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.db import session_scope
from service.jobs import service as job_service
from service.models import Job, TrialSlot
from tests.conftest import apply_env
from tests.factories import example_job
from workers import reconcile


def _slot_statuses(job_id: str) -> list[str]:
    with session_scope() as session:
        rows = session.scalars(
            select(TrialSlot.status).where(TrialSlot.job_id == uuid.UUID(job_id))
        )
        return sorted(rows)


def _messages(data_dir: Path) -> int:
    return len(list((data_dir / "broker" / "queue").glob("*.msg")))


def test_broker_down_job_is_accepted_and_dispatched_when_it_returns(
    sqlite_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    data_dir: Path,
    auth: dict[str, str],
) -> None:
    # nothing listens on port 1: every publish fails fast
    apply_env(monkeypatch, {**sqlite_env, "OPTSERVE_BROKER_URL": "redis://127.0.0.1:1/0"})
    with TestClient(create_app()) as client:
        response = client.post("/v1/jobs", json=example_job(), headers=auth)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
        assert client.get("/v1/health").json()["status"] == "degraded"
    job_id = response.json()["id"]
    assert _slot_statuses(job_id) == ["queued"] * 6  # released, nothing half-dispatched

    apply_env(monkeypatch, {**sqlite_env, "OPTSERVE_BROKER_URL": ""})  # broker is back
    reconcile.reconcile_once()
    assert _slot_statuses(job_id) == ["dispatched"] * 2 + ["queued"] * 4
    assert _messages(data_dir) == 2


def test_request_failing_after_enqueue_publishes_nothing(
    client: TestClient,
    auth: dict[str, str],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("boom after the job was added")

    monkeypatch.setattr(job_service, "to_read", explode)
    with TestClient(client.app, raise_server_exceptions=False) as failing:
        response = failing.post("/v1/jobs", json=example_job(), headers=auth)
    assert response.status_code == 500
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    assert _messages(data_dir) == 0
