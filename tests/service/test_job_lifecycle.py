"""Budgets and lifecycle: timeout, trial_timeout, max_failed_trials, target, PATCH,
Idempotency-Key, and cancellation on real processes (slow).

In-process tests POST with the TestClient and call ``run_trial`` as a worker would.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db import session_scope
from service.models import CurvePoint, Job, TrialRun, TrialSlot
from service.models._types import utcnow
from tests.e2e.harness import embedded_up, wait_for
from tests.factories import example_job, make_key
from workers import reconcile
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


def body(**overrides: Any) -> dict[str, Any]:
    job = example_job(task=TASK, search_space=SPACE, n_trials=3, max_parallel=1)
    job.update(overrides)
    return job


def submit(client: TestClient, auth: dict[str, str], **overrides: Any) -> uuid.UUID:
    response = client.post("/v1/jobs", json=body(**overrides), headers=auth)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


def job_row(job_id: uuid.UUID) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def slot_statuses(job_id: uuid.UUID) -> list[str]:
    with session_scope() as session:
        stmt = select(TrialSlot.status).where(TrialSlot.job_id == job_id).order_by(TrialSlot.slot)
        return list(session.scalars(stmt))


def runs(job_id: uuid.UUID) -> list[TrialRun]:
    with session_scope() as session:
        stmt = select(TrialRun).where(TrialRun.job_id == job_id).order_by(TrialRun.number)
        return list(session.scalars(stmt))


# -- budgets ------------------------------------------------------------------------------
def test_timeout_stops_a_job_between_trials(client: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(client, auth, timeout=3600.0)
    run_trial(str(job_id), 0, "w1")
    with session_scope() as session:  # an hour later
        job = session.get(Job, job_id)
        assert job is not None and job.started_at is not None
        job.started_at = utcnow() - dt.timedelta(hours=2)
    reconcile.reconcile_once()
    job = job_row(job_id)
    assert job.status == "completed"
    assert (job.error or "").startswith("timeout")
    assert slot_statuses(job_id) == ["done", "cancelled", "cancelled"]
    assert run_trial(str(job_id), 1, "w1") == "skipped: job has ended"


def test_timeout_stops_a_running_trial_at_the_epoch_boundary(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = submit(client, auth, timeout=0.001)
    run_trial(str(job_id), 0, "w1")
    (run,) = runs(job_id)
    assert run.state == "cancelled" and "timeout" in (run.failure_reason or "")
    with session_scope() as session:  # stopped after its first epoch, not at the end
        points = session.scalars(select(CurvePoint).where(CurvePoint.trial_id == run.id))
        assert len(list(points)) == 1
    job = job_row(job_id)
    assert job.status == "failed" and (job.error or "").startswith("timeout")
    assert slot_statuses(job_id) == ["cancelled"] * 3


def test_trial_timeout_fails_the_trial_and_the_job_goes_on(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = submit(client, auth, trial_timeout=0.001)
    run_trial(str(job_id), 0, "w1")
    (run,) = runs(job_id)
    assert run.state == "fail"
    assert (run.failure_reason or "").startswith("timeout: trial ran past trial_timeout")
    assert slot_statuses(job_id) == ["failed", "dispatched", "queued"]


def test_max_failed_trials_fails_the_job(client: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(client, auth, max_failed_trials=1, trial_timeout=0.001)
    run_trial(str(job_id), 0, "w1")
    assert job_row(job_id).status == "running"  # one failure is allowed
    run_trial(str(job_id), 1, "w1")
    job = job_row(job_id)
    assert job.status == "failed" and "max_failed_trials=1" in (job.error or "")
    assert slot_statuses(job_id) == ["failed", "failed", "cancelled"]


def test_target_reached_completes_the_job_and_cancels_the_rest(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = submit(client, auth, n_trials=4, max_parallel=2, target=0.2)
    run_trial(str(job_id), 0, "w1")
    job = job_row(job_id)
    assert job.status == "completed" and (job.error or "").startswith("target reached")
    assert slot_statuses(job_id) == ["done", "cancelled", "cancelled", "cancelled"]
    assert run_trial(str(job_id), 1, "w2") == "skipped: job has ended"
    assert len(runs(job_id)) == 1


def test_a_target_not_reached_changes_nothing(client: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(client, auth, n_trials=2, target=1.01)
    run_trial(str(job_id), 0, "w1")
    run_trial(str(job_id), 1, "w1")
    job = job_row(job_id)
    assert job.status == "completed" and job.error is None


# -- PATCH ----------------------------------------------------------------------------------
class TestUpdate:
    def test_raising_n_trials_adds_slots(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth, n_trials=2)
        response = client.patch(
            f"/v1/jobs/{job_id}", json={"n_trials": 4, "max_parallel": 2}, headers=auth
        )
        assert response.status_code == 200, response.text
        assert response.json()["spec"]["n_trials"] == 4
        assert slot_statuses(job_id) == ["dispatched", "dispatched", "queued", "queued"]
        for slot in range(4):
            run_trial(str(job_id), slot, "w1")
        assert job_row(job_id).status == "completed"
        assert len(runs(job_id)) == 4

    @pytest.mark.parametrize(
        "change", [{"search_space": {"optimizers": ["adamw"]}}, {"sampler": {"name": "random"}}]
    )
    def test_other_fields_are_a_409_naming_them(
        self, client: TestClient, auth: dict[str, str], change: dict[str, Any]
    ) -> None:
        job_id = submit(client, auth)
        response = client.patch(f"/v1/jobs/{job_id}", json={"n_trials": 5, **change}, headers=auth)
        assert response.status_code == 409
        (field,) = change
        assert response.json()["detail"][0]["loc"] == ["body", field]
        assert slot_statuses(job_id).count("queued") + 1 == 3  # nothing changed

    def test_lowering_n_trials_is_a_422(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        response = client.patch(f"/v1/jobs/{job_id}", json={"n_trials": 2}, headers=auth)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "n_trials"]

    def test_max_parallel_above_n_trials_is_a_422(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job_id = submit(client, auth)
        response = client.patch(f"/v1/jobs/{job_id}", json={"max_parallel": 4}, headers=auth)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "max_parallel"]

    def test_unknown_field_is_a_422(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        response = client.patch(f"/v1/jobs/{job_id}", json={"n_trails": 5}, headers=auth)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "n_trails"]

    def test_an_ended_job_is_a_409(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
        response = client.patch(f"/v1/jobs/{job_id}", json={"n_trials": 5}, headers=auth)
        assert response.status_code == 409

    def test_another_tenants_job_is_a_404(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        response = client.patch(f"/v1/jobs/{job_id}", json={"n_trials": 5}, headers=other)
        assert response.status_code == 404


# -- Idempotency-Key ------------------------------------------------------------------------
class TestIdempotency:
    def post(self, client: TestClient, auth: dict[str, str], key: str, **kw: Any) -> Any:
        return client.post("/v1/jobs", json=body(**kw), headers={**auth, "Idempotency-Key": key})

    def test_same_key_same_body_is_the_same_job(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        first = self.post(client, auth, "k-1")
        again = self.post(client, auth, "k-1")
        assert first.status_code == 202 and again.status_code == 200
        assert first.json()["id"] == again.json()["id"]
        assert client.get("/v1/jobs", headers=auth).json()["total"] == 1

    def test_same_key_other_body_is_a_409(self, client: TestClient, auth: dict[str, str]) -> None:
        assert self.post(client, auth, "k-2").status_code == 202
        response = self.post(client, auth, "k-2", n_trials=4)
        assert response.status_code == 409
        assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]

    def test_keys_are_scoped_per_tenant(self, client: TestClient, auth: dict[str, str]) -> None:
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        mine = self.post(client, auth, "shared")
        theirs = self.post(client, other, "shared")
        assert mine.status_code == theirs.status_code == 202
        assert mine.json()["id"] != theirs.json()["id"]

    def test_without_a_key_every_post_is_a_new_job(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        ids = {client.post("/v1/jobs", json=body(), headers=auth).json()["id"] for _ in range(2)}
        assert len(ids) == 2


# -- cancellation on real processes ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cancel_stops_a_running_job_within_ten_seconds(tmp_path: Path) -> None:
    with embedded_up(tmp_path) as (stack, key):
        http = httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        job = body(n_trials=4, max_parallel=1, task={**TASK, "epochs": 200})
        job_id = http.post("/v1/jobs", json=job).json()["id"]

        def running_trial() -> bool:
            trials = http.get(f"/v1/jobs/{job_id}/trials").json()["items"]
            return any(t["state"] == "running" for t in trials)

        wait_for(running_trial, 120, "a running trial", stack)
        assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        cancelled_at = utcnow()

        def cancelled() -> Any:
            read = http.get(f"/v1/jobs/{job_id}").json()
            return read if read["status"] == "cancelled" else None

        wait_for(cancelled, 10, "the job to be cancelled", stack)
        trials = http.get(f"/v1/jobs/{job_id}/trials").json()["items"]
    assert trials and all(t["state"] != "running" for t in trials), trials
    assert {t["state"] for t in trials} == {"cancelled"}, trials
    assert all(_utc(t["started_at"]) < cancelled_at for t in trials), "a trial started after"


def _utc(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)
