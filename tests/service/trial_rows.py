"""Trial runs and curves written the way workers write them, without training anything.

Params are sampled from the job's resolved space by the workers' own ``suggest`` on an
in-memory Optuna study, so they are exactly what a real trial stores; runs are created
as RUNNING rows and ended through the trials repository (``finish_run``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import optuna
from fastapi.testclient import TestClient

from service.db import session_scope
from service.models import CurvePoint, Job, TrialRun, TrialState
from service.trials import repository as trials
from tests.factories import example_job
from workers.objective import suggest

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def submit(client: TestClient, auth: dict[str, str], **overrides: Any) -> uuid.UUID:
    response = client.post("/v1/jobs", json=example_job(**overrides), headers=auth)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


def sample_params(resolved_space: dict[str, Any], n: int, seed: int = 0) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        suggest(trial, resolved_space)
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def add_runs(
    job_id: uuid.UUID,
    n: int,
    *,
    points: int = 3,
    value: Callable[[int, dict[str, Any]], float | None] = lambda i, _p: float(i),
    state: Callable[[int], TrialState] = lambda _i: TrialState.COMPLETE,
    duration_s: Callable[[int], float] = lambda _i: 10.0,
    start: int = 0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``n`` finished runs numbered from ``start``, each with ``points`` curve points."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        params = sample_params(job.resolved_space, n, seed=seed)
    with session_scope() as session:
        for k, p in enumerate(params):
            i = start + k
            run = TrialRun(
                job_id=job_id,
                slot=i,
                attempt=1,
                number=i,
                optimizer=p["optimizer"],
                params=p,
                hyperparameters={},
                seed=0,
                started_at=T0 + dt.timedelta(hours=i),
            )
            session.add(run)
            session.flush()
            for epoch in range(1, points + 1):
                trials.upsert_curve_point(
                    session,
                    CurvePoint(
                        trial_id=run.id,
                        epoch=epoch,
                        step=epoch * 10,
                        examples=epoch * 640,
                        wall_time=float(epoch),
                        train_loss=1.0 / epoch,
                        val_loss=1.5 / epoch,
                        val_metric=float(i) + epoch / 100,
                        lr=0.01,
                        metrics={"val_accuracy": float(i) + epoch / 100, "val_loss": 1.5 / epoch},
                    ),
                )
            s = state(i)
            assert trials.finish_run(
                session, run.id, s, value=value(i, p) if s == "complete" else None
            )
            run.finished_at = run.started_at + dt.timedelta(seconds=duration_s(i))  # type: ignore[operator]
    return params
