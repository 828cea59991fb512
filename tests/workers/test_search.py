"""Samplers, pruners and the search-space language, each on a small real job.

In-process: a job is POSTed with the TestClient, then ``run_trial`` is called slot by
slot as a worker would (real training on digits, real Optuna storage on SQLite).
"""

from __future__ import annotations

import inspect
import math
import uuid
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api_schemas.jobs import PRUNER_OPTIONS, SAMPLER_OPTIONS, PrunerName, SamplerName
from service.db import session_scope
from service.models import CurvePoint, Job, TrialRun
from tests.factories import example_job
from workers import samplers
from workers.optuna_storage import get_storage, study_name
from workers.trial_runner import run_trial

TINY_TASK = {
    "model": {"name": "mlp", "params": {"width": 16}},
    "dataset": {"name": "digits"},
    "epochs": 2,
    "batch_size": 128,
    "metric": "val_accuracy",
    "direction": "maximize",
    "seed": 0,
}
SGD_RANGE = {
    "optimizers": {"sgd": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}}
}


def submit(client: TestClient, auth: dict[str, str], **overrides: Any) -> uuid.UUID:
    body = example_job(task=TINY_TASK, max_parallel=1, search_space=SGD_RANGE)
    body.update(overrides)
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


def run_all(job_id: uuid.UUID, n: int) -> list[str]:
    return [run_trial(str(job_id), slot, "w1") for slot in range(n)]


def runs(job_id: uuid.UUID) -> list[TrialRun]:
    with session_scope() as session:
        stmt = select(TrialRun).where(TrialRun.job_id == job_id).order_by(TrialRun.number)
        return list(session.scalars(stmt))


def job_row(job_id: uuid.UUID) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def epochs_trained(job_id: uuid.UUID) -> int:
    with session_scope() as session:
        stmt = (
            select(func.count())
            .select_from(CurvePoint)
            .join(TrialRun, TrialRun.id == CurvePoint.trial_id)
            .where(TrialRun.job_id == job_id)
        )
        return int(session.scalar(stmt) or 0)


# -- the registries and the API agree ---------------------------------------------------
def test_sampler_and_pruner_names_and_options_match_the_registries() -> None:
    assert set(samplers.SAMPLERS) == set(SAMPLER_OPTIONS) == set(SamplerName.__args__)
    assert set(samplers.PRUNERS) == set(PRUNER_OPTIONS) == set(PrunerName.__args__)
    optuna_classes: dict[str, type] = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "qmc": optuna.samplers.QMCSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "gp": optuna.samplers.GPSampler,
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }
    options = {**SAMPLER_OPTIONS, **PRUNER_OPTIONS}
    for name, cls in optuna_classes.items():
        accepted = set(inspect.signature(cls).parameters)
        assert set(options[name]) <= accepted, (name, set(options[name]) - accepted)


# -- every sampler runs a job end to end ------------------------------------------------
SAMPLER_JOBS: dict[str, dict[str, Any]] = {
    "tpe": {"sampler": {"name": "tpe", "options": {"n_startup_trials": 1}}},
    "random": {"sampler": {"name": "random"}},
    "qmc": {"sampler": {"name": "qmc", "options": {"scramble": True}}},
    "cmaes": {
        "sampler": {"name": "cmaes", "options": {"n_startup_trials": 1}},
        "search_space": {
            "optimizers": {
                "sgd": {
                    "lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
                    "momentum": {"type": "float", "low": 0.0, "high": 0.9},
                }
            }
        },
    },
    "gp": {"sampler": {"name": "gp", "options": {"n_startup_trials": 1}}},
    "grid": {
        "sampler": {"name": "grid"},
        "search_space": {
            "optimizers": {"sgd": {"lr": {"type": "categorical", "choices": [0.05, 0.2]}}}
        },
    },
}


@pytest.mark.parametrize("name", sorted(SAMPLER_JOBS))
def test_every_sampler_runs_a_job(client: TestClient, auth: dict[str, str], name: str) -> None:
    n = 3 if name != "grid" else 2
    job_id = submit(client, auth, n_trials=n, **SAMPLER_JOBS[name])
    assert all(out.endswith("complete") for out in run_all(job_id, n))
    done = runs(job_id)
    assert len(done) == n and all(r.state == "complete" for r in done)
    assert all(0.01 <= r.hyperparameters["lr"] <= 0.5 for r in done)
    assert job_row(job_id).status == "completed"


def test_grid_runs_each_point_once_in_slot_order(client: TestClient, auth: dict[str, str]) -> None:
    """The paper-style LR sweep: slot i runs point i, whatever the order of execution."""
    space = {
        "optimizers": {
            "sgd": {"lr": {"type": "categorical", "choices": [0.3, 0.1, 0.03]}},
            "adamw": {"lr": {"type": "categorical", "choices": [0.01, 0.001]}},
        }
    }
    job_id = submit(
        client, auth, n_trials=5, max_parallel=5, sampler={"name": "grid"}, search_space=space
    )
    for slot in (4, 0, 2, 1, 3):
        run_trial(str(job_id), slot, "w1")
    by_slot = {r.slot: (r.optimizer, r.hyperparameters["lr"]) for r in runs(job_id)}
    assert by_slot == {
        0: ("adamw", 0.01),
        1: ("adamw", 0.001),
        2: ("sgd", 0.3),
        3: ("sgd", 0.1),
        4: ("sgd", 0.03),
    }
    # unmentioned hyperparameters are fixed at their defaults, not tuned
    adamw = next(r for r in runs(job_id) if r.optimizer == "adamw")
    assert set(adamw.params) == {"optimizer", "adamw.lr"}


def test_grid_refuses_ranges_and_budgets_beyond_the_grid(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = example_job(task=TINY_TASK, n_trials=2, max_parallel=1, sampler={"name": "grid"})
    body["search_space"] = SGD_RANGE
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "search_space", "optimizers", "sgd", "lr", "float"]
    body["search_space"] = {
        "optimizers": {"sgd": {"lr": {"type": "categorical", "choices": [0.1]}}}
    }
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "n_trials"]


# -- every pruner runs a job end to end -------------------------------------------------
PRUNER_JOBS: dict[str, dict[str, Any]] = {
    "none": {},
    "median": {"n_startup_trials": 1},
    "percentile": {"percentile": 25.0, "n_startup_trials": 1},
    "successive_halving": {"min_resource": 1, "reduction_factor": 2},
    "hyperband": {"min_resource": 1, "reduction_factor": 2},
    "threshold": {"lower": 0.5},
}


@pytest.mark.parametrize("name", sorted(PRUNER_JOBS))
def test_every_pruner_runs_a_job(client: TestClient, auth: dict[str, str], name: str) -> None:
    space = {"optimizers": {"sgd": {"lr": {"type": "categorical", "choices": [0.0001, 0.3]}}}}
    job_id = submit(
        client,
        auth,
        n_trials=4,
        search_space=space,
        sampler={"name": "random", "seed": 1},
        pruner={"name": name, "options": PRUNER_JOBS[name]},
    )
    run_all(job_id, 4)
    done = runs(job_id)
    assert {r.state for r in done} <= {"complete", "pruned"} and len(done) == 4
    assert job_row(job_id).status == "completed"
    if name == "threshold":  # lr=1e-4 stays near chance accuracy: below 0.5 after epoch 1
        slow = [r for r in done if r.hyperparameters["lr"] == 0.0001]
        assert slow and all(r.state == "pruned" for r in slow)


def test_successive_halving_prunes_bad_learning_rates_and_saves_epochs(
    client: TestClient, auth: dict[str, str]
) -> None:
    """The same job with and without ASHA: pruned trials stop early, fewer epochs overall."""
    lrs = [0.3, 1e-4, 3e-4, 0.1, 1e-4, 3e-4, 2e-4, 1e-4]
    choices = sorted(set(lrs))
    space = {"optimizers": {"sgd": {"lr": {"type": "categorical", "choices": choices}}}}
    task = {**TINY_TASK, "epochs": 6}
    totals = {}
    for pruner in ("none", "successive_halving"):
        job_id = submit(
            client,
            auth,
            task=task,
            n_trials=len(lrs),
            search_space=space,
            sampler={"name": "random", "seed": 0},
            pruner={"name": pruner, "options": {"min_resource": 1, "reduction_factor": 2}}
            if pruner != "none"
            else {"name": "none"},
        )
        _run_with_learning_rates(job_id, lrs)
        totals[pruner] = epochs_trained(job_id)
        if pruner == "successive_halving":
            # every bad learning rate stops early; the best one runs to the end
            states = {(r.hyperparameters["lr"], r.state) for r in runs(job_id)}
            assert all(state == "pruned" for lr, state in states if lr < 0.01), states
            assert (0.3, "complete") in states
    print(
        f"epochs trained: without pruning {totals['none']}, with ASHA", totals["successive_halving"]
    )
    assert totals["none"] == len(lrs) * 6
    assert totals["successive_halving"] < totals["none"]


def _run_with_learning_rates(job_id: uuid.UUID, lrs: list[float]) -> None:
    """Give slot i the learning rate lrs[i] (a fixed order makes the test deterministic)."""
    study = optuna.create_study(
        study_name=study_name(str(job_id)),
        storage=get_storage(),
        direction="maximize",
        load_if_exists=True,
    )
    for slot, lr in enumerate(lrs):
        study.enqueue_trial({"optimizer": "sgd", "sgd.lr": lr})
        run_trial(str(job_id), slot, "w1")


# -- the search-space language, at the worker -------------------------------------------
def test_lookahead_wraps_every_optimizer(client: TestClient, auth: dict[str, str]) -> None:
    space = {"optimizers": {"sgd": {"lr": 0.1}, "adamw": {"lr": 0.003}}}
    job_id = submit(
        client,
        auth,
        n_trials=2,
        search_space=space,
        lookahead={"k": {"type": "int", "low": 2, "high": 4}, "alpha": 0.5},
        sampler={"name": "random", "seed": 0},
    )
    resolved = job_row(job_id).resolved_space["optimizers"]
    assert set(resolved) == {"lookahead+sgd", "lookahead+adamw"}
    assert resolved["lookahead+sgd"]["lookahead_alpha"] == {"type": "fixed", "value": 0.5}
    run_all(job_id, 2)
    for run in runs(job_id):
        assert run.state == "complete", run.failure_reason
        assert run.optimizer in resolved
        assert 2 <= run.params[f"{run.optimizer}.lookahead_k"] <= 4
        assert run.hyperparameters["lookahead_alpha"] == 0.5


def test_lookahead_refuses_an_already_wrapped_optimizer(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = example_job(task=TINY_TASK, lookahead={})
    body["search_space"] = {"optimizers": ["lookahead+sgd"]}
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == [
        "body",
        "search_space",
        "optimizers",
        "lookahead+sgd",
    ]


def test_grad_clip_reaches_the_training_loop(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.trial_runner as runner

    seen: list[float | None] = []
    real_train = runner.train

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs.get("grad_clip"))
        return real_train(**kwargs)

    monkeypatch.setattr(runner, "train", spy)
    job_id = submit(client, auth, n_trials=1, task={**TINY_TASK, "grad_clip": 1.0})
    run_all(job_id, 1)
    assert seen == [1.0]
    assert runs(job_id)[0].state == "complete"


README_SPEC: dict[str, Any] = {
    "search_space": {
        "optimizers": {
            "sgd": {
                "lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
                "momentum": {"type": "float", "low": 0.0, "high": 0.99},
            },
            "adamw": {},
        }
    },
    "schedule": {"cosine": {}, "constant": {}},
}


def test_readme_spec_resolves_to_the_expected_distributions(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = submit(client, auth, n_trials=6, sampler={"name": "random", "seed": 2}, **README_SPEC)
    run_all(job_id, 6)
    study = optuna.load_study(study_name=study_name(str(job_id)), storage=get_storage())
    dists: dict[str, Any] = {}
    for t in study.trials:
        dists.update(t.distributions)
    assert dists["optimizer"] == optuna.distributions.CategoricalDistribution(["adamw", "sgd"])
    assert dists["sgd.lr"] == optuna.distributions.FloatDistribution(0.001, 1.0, log=True)
    assert dists["sgd.momentum"] == optuna.distributions.FloatDistribution(0.0, 0.99)
    assert dists["adamw.lr"].log and dists["adamw.weight_decay"].log
    assert dists["schedule"] == optuna.distributions.CategoricalDistribution(["constant", "cosine"])
    schedule_params = {n for n in dists if n.startswith("cosine.")}
    assert schedule_params, dists
    # conditional parameters appear only in trials of their optimizer and schedule
    for run in runs(job_id):
        mine = {n.split(".", 1)[0] for n in run.params if "." in n}
        assert mine <= {run.params["optimizer"], run.params["schedule"]}, run.params
        assert f"{run.params['optimizer']}.lr" in run.params
        if run.params["schedule"] == "cosine":
            assert schedule_params & set(run.params)
        assert math.isfinite(run.value or math.nan)


# -- several objectives (P4) ------------------------------------------------------------------
OBJECTIVES = [
    {"metric": "val_accuracy", "direction": "maximize"},
    {"metric": "val_loss", "direction": "minimize"},
]


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_multi_objective_job_and_its_pareto_front(
    client: TestClient, auth: dict[str, str], sampler: str
) -> None:
    options = {"population_size": 2} if sampler == "nsga2" else {"n_startup_trials": 2}
    job_id = submit(
        client,
        auth,
        n_trials=4,
        objectives=OBJECTIVES,
        sampler={"name": sampler, "options": options},
        search_space={
            "optimizers": {"sgd": {"lr": {"type": "float", "low": 1e-4, "high": 0.5, "log": True}}}
        },
    )
    run_all(job_id, 4)
    assert job_row(job_id).status == "completed"
    study = optuna.load_study(study_name=study_name(str(job_id)), storage=get_storage())
    assert len(study.directions) == 2
    assert all(len(t.values) == 2 for t in study.trials)
    response = client.get(f"/v1/jobs/{job_id}/pareto", headers=auth)
    assert response.status_code == 200, response.text
    front = response.json()
    assert [o["metric"] for o in front["objectives"]] == ["val_accuracy", "val_loss"]
    # the same front as Optuna's own
    assert {t["trial"] for t in front["trials"]} == {t.number for t in study.best_trials}
    for t in front["trials"]:
        optuna_values = study.trials[t["trial"]].values
        assert [t["values"]["val_accuracy"], t["values"]["val_loss"]] == pytest.approx(
            optuna_values
        )


def test_single_objective_pareto_is_the_best_trial(
    client: TestClient, auth: dict[str, str]
) -> None:
    job_id = submit(client, auth, n_trials=2, sampler={"name": "random", "seed": 1})
    run_all(job_id, 2)
    front = client.get(f"/v1/jobs/{job_id}/pareto", headers=auth).json()
    best = client.get(f"/v1/jobs/{job_id}/best", headers=auth).json()
    assert [t["trial"] for t in front["trials"]] == [best["trial"]]


# -- mode: compare (P4) -----------------------------------------------------------------------
def _slot_status(job_id: uuid.UUID) -> dict[int, str]:
    from service.models import TrialSlot

    with session_scope() as session:
        rows = session.scalars(select(TrialSlot).where(TrialSlot.job_id == job_id))
        return {s.slot: s.status for s in rows}


def test_compare_gives_each_optimizer_the_same_budget_then_confirms(
    client: TestClient, auth: dict[str, str]
) -> None:
    space = {
        "optimizers": {
            "sgd": {"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
            "adamw": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        }
    }
    job_id = submit(
        client,
        auth,
        n_trials=4,
        max_parallel=2,
        mode="compare",
        confirm_seeds=2,
        search_space=space,
        sampler={"name": "tpe", "options": {"n_startup_trials": 1}},
    )
    for slot in (0, 1, 2):
        run_trial(str(job_id), slot, "w1")
    status = _slot_status(job_id)
    # slot 3 still tunes: the confirmation reruns wait for it despite max_parallel=2
    assert status[3] == "dispatched" and status[4] == "queued"
    for slot in range(3, 8):
        run_trial(str(job_id), slot, "w1")
    assert job_row(job_id).status == "completed"
    by_slot = {r.slot: r for r in runs(job_id)}
    assert [by_slot[i].optimizer for i in range(8)] == ["adamw", "sgd"] * 2 + ["adamw"] * 2 + [
        "sgd"
    ] * 2
    assert [by_slot[i].seed for i in range(4, 8)] == [1, 2, 1, 2]
    read = client.get(f"/v1/jobs/{job_id}/comparison", headers=auth).json()
    assert read["budget_per_optimizer"] == 2 and read["confirm_seeds"] == 2
    for row in read["optimizers"]:
        assert row["finished"] == 2 and len(row["confirmations"]) == 2
        best = by_slot[next(r.slot for r in by_slot.values() if r.number == row["best_trial"])]
        for i in range(4, 8):  # the reruns ran the best tuning configuration
            if by_slot[i].optimizer == row["optimizer"]:
                assert by_slot[i].params == best.params
    means = [row["confirmation_mean"] for row in read["optimizers"]]
    assert means == sorted(means, reverse=True)  # val_accuracy: best first
    assert client.patch(f"/v1/jobs/{job_id}", json={"n_trials": 6}, headers=auth).status_code == 409


# -- shared knobs and multi-objective pruning (P4) --------------------------------------------
def test_shared_knobs_are_sampled_once_and_reach_the_training(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.trial_runner as runner

    seen: list[tuple[int, float | None]] = []
    real_train = runner.train

    def spy(**kwargs: Any) -> Any:
        seen.append((kwargs["batch_size"], kwargs["grad_clip"]))
        return real_train(**kwargs)

    monkeypatch.setattr(runner, "train", spy)
    space = {"optimizers": {"sgd": {"lr": 0.1}, "adamw": {"lr": 0.003}}}
    shared = {
        "batch_size": {"type": "categorical", "choices": [32, 256]},
        "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "grad_clip": {"type": "float", "low": 0.5, "high": 5.0},
    }
    job_id = submit(
        client,
        auth,
        n_trials=4,
        search_space=space,
        shared=shared,
        sampler={"name": "random", "seed": 3},
    )
    run_all(job_id, 4)
    done = runs(job_id)
    assert {r.state for r in done} == {"complete"}
    assert len({r.optimizer for r in done}) == 2, "the seed should draw both optimizers"
    for run, (batch_size, grad_clip) in zip(done, seen, strict=True):
        # one dimension per knob, whatever the optimizer: no "<optimizer>.weight_decay"
        assert {"batch_size", "weight_decay", "grad_clip"} <= set(run.params)
        assert not any(name.endswith(".weight_decay") for name in run.params)
        assert run.hyperparameters["weight_decay"] == run.params["weight_decay"]
        assert (batch_size, grad_clip) == (run.params["batch_size"], run.params["grad_clip"])


def test_a_multi_objective_job_is_pruned_on_its_first_objective(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Hopeless learning rates stop early on val_accuracy while train_time rides along."""
    from workers.pruning import SHADOW_SUFFIX

    lrs = [0.3, 1e-4, 1e-4, 0.3, 1e-4]
    space = {"optimizers": {"sgd": {"lr": {"type": "categorical", "choices": [1e-4, 0.3]}}}}
    job_id = submit(
        client,
        auth,
        task={**TINY_TASK, "epochs": 4},
        n_trials=len(lrs),
        search_space=space,
        objectives=[OBJECTIVES[0], {"metric": "train_time", "direction": "minimize"}],
        sampler={"name": "nsga2", "options": {"population_size": 2}},
        # after one epoch lr=0.3 is near 0.47 and lr=1e-4 near chance (0.08)
        pruner={"name": "threshold", "options": {"lower": 0.3}},
    )
    study = optuna.create_study(
        study_name=study_name(str(job_id)),
        storage=get_storage(),
        directions=["maximize", "minimize"],
        load_if_exists=True,
    )
    for slot, lr in enumerate(lrs):
        study.enqueue_trial({"optimizer": "sgd", "sgd.lr": lr})
        run_trial(str(job_id), slot, "w1")
    states = [(r.hyperparameters["lr"], r.state, r.failure_reason, r.value) for r in runs(job_id)]
    assert all(state == "pruned" for lr, state, *_ in states if lr == 1e-4), states
    assert all(state == "complete" for lr, state, *_ in states if lr == 0.3), states
    assert epochs_trained(job_id) < len(lrs) * 4
    assert job_row(job_id).status == "completed"
    # the job's own study keeps both objectives; the shadow holds the first one
    main = optuna.load_study(study_name=study_name(str(job_id)), storage=get_storage())
    assert all(len(t.values) == 2 for t in main.trials if t.state.name == "COMPLETE")
    assert [t.state.name for t in main.trials].count("PRUNED") == 3
    shadow = optuna.load_study(
        study_name=study_name(str(job_id)) + SHADOW_SUFFIX, storage=get_storage()
    )
    assert [t.state.name for t in shadow.trials] == [t.state.name for t in main.trials]
