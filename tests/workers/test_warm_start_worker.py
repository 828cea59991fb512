"""The worker side of warm starts: enqueueing per slot, retries, the sampler's start-up.

In-process on real Optuna storages (in-memory, and the job's SQLite study); the same
path on real worker processes is tests/e2e/test_warm_start_e2e.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from optuna.distributions import FloatDistribution
from sqlalchemy import select

from service.db import session_scope
from service.models import Job, TrialRun
from tests.factories import example_job
from workers import warm_start
from workers.optuna_storage import get_storage, study_name
from workers.samplers import SamplerContext, build_sampler
from workers.trial_runner import run_trial

SOURCE = {"kind": "warm_start", "job_id": str(uuid.uuid4()), "trial": 3, "similarity": 0.9}


def space_with(*points: dict[str, Any]) -> dict[str, Any]:
    configs = [{"params": p, "source": {**SOURCE, "trial": i}} for i, p in enumerate(points)]
    return {"optimizers": {}, "warm_start": {"configurations": configs, "narrowed": {}}}


def run(study: optuna.Study, state: optuna.trial.TrialState | None = None) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    if state == optuna.trial.TrialState.FAIL:
        study.tell(trial, state=state)
    elif state is not None:
        study.tell(trial, 0.5)
    return trial


class TestEnqueue:
    def test_slot_below_n_runs_its_configuration_with_the_source(self) -> None:
        study = optuna.create_study()
        space = space_with({"x": 0.25}, {"x": 0.75})
        assert warm_start.enqueue_for_slot(study, space, 1)
        trial = run(study)
        assert trial.params == {"x": 0.75}
        assert warm_start.source_of(trial) == {**SOURCE, "trial": 1}
        assert trial.user_attrs[warm_start.INDEX_ATTR] == 1

    def test_slots_past_n_and_cold_jobs_sample(self) -> None:
        study = optuna.create_study()
        assert not warm_start.enqueue_for_slot(study, space_with({"x": 0.25}), 1)
        assert not warm_start.enqueue_for_slot(study, {"optimizers": {}}, 0)
        assert not warm_start.enqueue_for_slot(study, {"optimizers": {}, "warm_start": None}, 0)
        assert warm_start.source_of(run(study)) is None

    def test_never_twice_unless_every_earlier_try_failed(self) -> None:
        study = optuna.create_study()
        space = space_with({"x": 0.25})
        assert warm_start.enqueue_for_slot(study, space, 0)
        assert not warm_start.enqueue_for_slot(study, space, 0)  # still waiting
        run(study, optuna.trial.TrialState.FAIL)  # its worker was lost
        assert warm_start.enqueue_for_slot(study, space, 0)  # the retry reruns it
        assert run(study, optuna.trial.TrialState.COMPLETE).params == {"x": 0.25}
        assert not warm_start.enqueue_for_slot(study, space, 0)
        sources = [t.user_attrs.get(warm_start.INDEX_ATTR) for t in study.trials]
        assert sources == [0, 0]


class TestStartup:
    """Warm trials replace the random start-up: TPE models once they have finished."""

    def _models(self, options: dict[str, Any], resolved: dict[str, Any], done: int) -> bool:
        ctx = SamplerContext(seed=1, job_seed=1, slot=0, resolved_space=resolved)
        sampler = build_sampler({"name": "tpe", "options": options}, ctx)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(done):
            run(study, optuna.trial.TrialState.COMPLETE)
        study.ask()
        frozen = study.trials[-1]
        space = sampler.infer_relative_search_space(study, frozen)
        assert space == {"x": FloatDistribution(0.0, 1.0)} or done == 0
        return bool(sampler.sample_relative(study, frozen, space))

    def test_tpe_models_right_after_the_warm_trials(self) -> None:
        warm = space_with({"x": 0.2}, {"x": 0.4}, {"x": 0.6})
        assert not self._models({}, warm, done=2)
        assert self._models({}, warm, done=3)

    def test_cold_jobs_keep_optunas_ten_random_trials(self) -> None:
        assert not self._models({}, {"optimizers": {}}, done=3)
        assert not self._models({}, {"optimizers": {}}, done=9)
        assert self._models({}, {"optimizers": {}}, done=10)

    def test_a_users_n_startup_trials_counts_the_warm_ones(self) -> None:
        warm = space_with({"x": 0.2}, {"x": 0.4}, {"x": 0.6})
        assert not self._models({"n_startup_trials": 5}, warm, done=4)
        assert self._models({"n_startup_trials": 5}, warm, done=5)


def test_warm_slot_trains_the_stored_configuration(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Slot 0 of a warm job, in-process: the run and Optuna's trial carry the source."""
    lr = {"type": "float", "low": 0.001, "high": 1.0}
    sgd = {"optimizers": {"sgd": {"lr": lr, "momentum": 0.9}}}  # lr is its only parameter
    task = {**example_job()["task"], "epochs": 1}  # type: ignore[dict-item]
    past = client.post(
        "/v1/jobs",
        json=example_job(search_space=sgd, task=task, n_trials=1, max_parallel=1),
        headers=auth,
    ).json()["id"]
    with session_scope() as session:
        job = session.get(Job, uuid.UUID(past))
        assert job is not None
        job.status = "completed"
        session.add(
            TrialRun(
                job_id=job.id,
                slot=0,
                attempt=1,
                number=0,
                state="complete",
                optimizer="sgd",
                params={"optimizer": "sgd", "sgd.lr": 0.123},
                hyperparameters={"lr": 0.123},
                value=0.9,
            )
        )
    body = example_job(
        search_space=sgd,
        task=task,
        n_trials=2,
        max_parallel=1,
        warm_start={"from": [past], "k": 1},
    )
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    (config,) = response.json()["resolved_space"]["warm_start"]["configurations"]
    assert config["params"] == {"optimizer": "sgd", "sgd.lr": 0.123}

    assert run_trial(job_id, 0, "w1").endswith("complete")
    with session_scope() as session:
        (row,) = session.scalars(select(TrialRun).where(TrialRun.job_id == uuid.UUID(job_id)))
        assert row.params == config["params"]
        assert row.hyperparameters["lr"] == 0.123
        assert row.source == config["source"]
    trials = client.get(f"/v1/jobs/{job_id}/trials", headers=auth).json()["items"]
    assert trials[0]["source"] == {
        "kind": "warm_start",
        "job_id": past,
        "trial": 0,
        "similarity": pytest.approx(1.0),
    }
    study = optuna.load_study(study_name=study_name(job_id), storage=get_storage())
    assert study.trials[0].user_attrs[warm_start.SOURCE_ATTR] == config["source"]
