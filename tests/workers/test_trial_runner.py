"""The trial runner's rules, in-process on SQLite (real training, real Optuna storage).

Covers RELIABILITY W3, W9, W10, W13, N1 and V10-at-the-worker; the same paths with
real killed processes are in tests/e2e.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import optuna
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from service.db import session_scope
from service.models import Job, TrialRun, TrialSlot
from service.models._types import utcnow
from service.trials import repository as trials
from tests.factories import example_job
from workers import reconcile
from workers.objective import Configuration
from workers.optuna_storage import get_storage, study_name
from workers.training.loop import param_groups
from workers.trial_runner import _optimizer_factory, run_trial


def submit(client: TestClient, auth: dict[str, str], **overrides: Any) -> uuid.UUID:
    response = client.post("/v1/jobs", json=example_job(**overrides), headers=auth)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


def runs(job_id: uuid.UUID) -> list[TrialRun]:
    with session_scope() as session:
        return list(session.scalars(select(TrialRun).where(TrialRun.job_id == job_id)))


def slot(job_id: uuid.UUID, n: int) -> TrialSlot:
    with session_scope() as session:
        found = session.get(TrialSlot, (job_id, n))
        assert found is not None
        return found


def job_status(job_id: uuid.UUID) -> str:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.status


ONE_SGD = {"optimizers": {"sgd": {"lr": 0.1, "momentum": 0.9}}}


def test_duplicate_delivery_runs_the_trial_once(client: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(client, auth, n_trials=1, max_parallel=1, search_space=ONE_SGD)
    assert run_trial(str(job_id), 0, "w1") == "slot 0 attempt 1: complete"
    assert run_trial(str(job_id), 0, "w2") == "skipped: job has ended"
    assert len(runs(job_id)) == 1
    assert job_status(job_id) == "completed"


def test_second_claim_of_a_running_slot_is_refused(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = submit(client, auth, n_trials=2, max_parallel=1, search_space=ONE_SGD)
    with session_scope() as session:
        assert trials.claim_slot(session, job_id, 0, "w1") == 1
    assert run_trial(str(job_id), 0, "w2") == "skipped: already claimed"
    assert runs(job_id) == []


def test_diverging_trial_is_pruned_and_marked(client: TestClient, auth: dict[str, str]) -> None:
    space = {"optimizers": {"sgd": {"lr": 1.0e6}}}
    job_id = submit(client, auth, n_trials=1, max_parallel=1, search_space=space)
    run_trial(str(job_id), 0, "w1")
    (run,) = runs(job_id)
    assert run.state == "pruned" and run.diverged
    assert "diverged" in (run.failure_reason or "")
    study = optuna.load_study(study_name=study_name(str(job_id)), storage=get_storage())
    (otrial,) = study.trials
    assert otrial.state == optuna.trial.TrialState.PRUNED
    assert otrial.user_attrs["optserve.diverged"] is True
    assert job_status(job_id) == "completed"


def test_invalid_hyperparameter_at_the_worker_fails_for_good(
    client: TestClient, auth: dict[str, str]
) -> None:
    """The API refuses beta1=1.0; if such a spec ever reaches a worker, no retry loop."""
    job_id = submit(
        client, auth, n_trials=2, max_parallel=1, search_space={"optimizers": ["adamw"]}
    )
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        space = dict(job.resolved_space)
        space["optimizers"] = {"adamw": {**space["optimizers"]["adamw"]}}
        space["optimizers"]["adamw"]["beta1"] = {"type": "fixed", "value": 1.0}
        job.resolved_space = space
    run_trial(str(job_id), 0, "w1")
    (run,) = runs(job_id)
    assert run.state == "fail"
    assert "Invalid beta1 value: 1.0" in (run.failure_reason or "")
    assert slot(job_id, 0).status == "failed" and slot(job_id, 0).attempts == 1
    reconcile.reconcile_once()
    assert slot(job_id, 0).status == "failed"  # not queued again
    assert slot(job_id, 1).status == "dispatched"  # the job goes on


def _die_mid_trial(job_id: uuid.UUID, n: int) -> TrialRun:
    """What a SIGKILLed worker leaves behind: a claimed slot, a RUNNING run and trial."""
    study = optuna.create_study(
        study_name=study_name(str(job_id)), storage=get_storage(), load_if_exists=True
    )
    otrial = study.ask()
    with session_scope() as session:
        session.execute(
            update(TrialSlot)
            .where(TrialSlot.job_id == job_id, TrialSlot.slot == n)
            .values(status="dispatched")
        )
        attempt = trials.claim_slot(session, job_id, n, "doomed")
        assert attempt is not None
        run = TrialRun(
            job_id=job_id, slot=n, attempt=attempt, number=otrial.number, state="running"
        )
        session.add(run)
        session.flush()
        old = utcnow() - dt.timedelta(hours=1)
        session.execute(
            update(TrialSlot)
            .where(TrialSlot.job_id == job_id, TrialSlot.slot == n)
            .values(heartbeat_at=old)
        )
        return run


def test_reconciler_fails_lost_runs_and_retries_a_bounded_number_of_times(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = submit(client, auth, n_trials=1, max_parallel=1, search_space=ONE_SGD)
    first = _die_mid_trial(job_id, 0)
    reconcile.reconcile_once()
    assert slot(job_id, 0).status == "dispatched"  # queued again and re-published
    second = _die_mid_trial(job_id, 0)
    reconcile.reconcile_once()
    assert slot(job_id, 0).status == "failed"  # max_attempts=2: no redelivery loop
    by_id = {r.id: r for r in runs(job_id)}
    for run in (first, second):
        assert by_id[run.id].state == "fail"
        assert "worker lost" in (by_id[run.id].failure_reason or "")
    study = optuna.load_study(study_name=study_name(str(job_id)), storage=get_storage())
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert job_status(job_id) == "failed"


def test_zombie_worker_cannot_overwrite_the_reapers_result(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = submit(client, auth, n_trials=1, max_parallel=1, search_space=ONE_SGD)
    run = _die_mid_trial(job_id, 0)
    reconcile.reconcile_once()
    with session_scope() as session:  # the original worker wakes up and reports success
        assert not trials.finish_run(session, run.id, "complete", value=0.99)
        assert not trials.set_slot_status(session, job_id, 0, "done", expect=["running"], attempt=1)
    (stored,) = runs(job_id)
    assert stored.state == "fail" and stored.value is None


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_best_follows_the_direction(
    client: TestClient, auth: dict[str, str], direction: str
) -> None:
    body_task = dict(example_job()["task"])  # type: ignore[call-overload]
    body_task["direction"] = direction
    job_id = submit(
        client,
        auth,
        n_trials=2,
        max_parallel=2,
        task=body_task,
        search_space={
            "optimizers": {"sgd": {"lr": {"type": "categorical", "choices": [0.001, 0.3]}}}
        },
        sampler={"name": "random", "seed": 3},
    )
    run_trial(str(job_id), 0, "w1")
    run_trial(str(job_id), 1, "w1")
    values = sorted(r.value for r in runs(job_id) if r.value is not None)
    best = client.get(f"/v1/jobs/{job_id}/best", headers=auth).json()
    assert best["value"] == pytest.approx(values[-1] if direction == "maximize" else values[0])


@pytest.mark.parametrize(("name", "fused"), [("lamb", True), ("adamw", True), ("nadam", None)])
def test_cpu_trials_take_the_fused_path_where_the_optimizer_has_one(
    name: str, fused: bool | None
) -> None:
    """On the CPU a fused path is a native kernel (or torch's own): same update, faster."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    optimizer = _optimizer_factory(Configuration(name, {}))(param_groups(net), 10)
    assert [g.get("fused") for g in optimizer.param_groups] == [fused, fused]
