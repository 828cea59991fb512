"""The recommender on hand-made histories whose answers are worked out by hand.

Jobs and trial runs are written directly into a migrated SQLite database; each test
states the scores and similarities it expects and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from service.models import UploadedDataset
from service.recommend.engine import (
    Recommendation,
    estimate,
    feature_scales,
    recommend,
    schedule_of,
    similarity,
    task_distance,
)
from service.recommend.fingerprint import balance_ratio, fingerprint_for_spec
from service.recommend.index import PastTask, load_history, quantile_scores
from tests.service.recommend_factories import FP_IRIS, add_job, task_spec, tenant_id
from workers import catalog


@pytest.fixture
def session(sqlite_env: dict[str, str]) -> Iterator[Session]:
    from service.db import session_scope

    with session_scope() as s:
        yield s


def _by_job(history: list[PastTask], job_id: uuid.UUID) -> PastTask:
    return next(t for t in history if t.job_id == job_id)


def _names(recs: list[Recommendation]) -> list[str]:
    return [r.optimizer for r in recs]


# -- normalisation ----------------------------------------------------------------------------
class TestQuantileScores:
    def test_minimize_best_is_one_worst_is_zero(self) -> None:
        assert quantile_scores([0.3, 0.1, 0.2], "minimize") == [0.0, 1.0, 0.5]

    def test_maximize_reverses(self) -> None:
        assert quantile_scores([0.3, 0.1, 0.2], "maximize") == [1.0, 0.0, 0.5]

    def test_ties_share_their_mean_rank(self) -> None:
        assert quantile_scores([1.0, 1.0, 2.0], "minimize") == [0.75, 0.75, 0.0]

    def test_scale_free(self) -> None:
        losses = [0.021, 0.020, 0.5]
        assert quantile_scores(losses, "minimize") == quantile_scores(
            [x * 1000 for x in losses], "minimize"
        )

    def test_lone_trial_is_best(self) -> None:
        assert quantile_scores([42.0], "minimize") == [1.0]


def test_history_scores_completed_trials_within_their_job(session: Session) -> None:
    job = add_job(
        session,
        "tenant-a",
        [
            ("sgd", 0.1, 0.4),
            ("sgd", 0.01, 0.1),
            ("adamw", 0.001, 0.2),
            ("adamw", 0.01, 0.3),
            ("adamw", 0.3, 0.05, "pruned"),  # no final value: left out
            ("sgd", 1.0, None, "fail"),
        ],
    )
    add_job(session, "tenant-a", [("sgd", 0.1, 0.0)], status="running")  # unfinished
    history = load_history(session, tenant_id(session, "tenant-a"))
    assert [t.job_id for t in history] == [job]
    scores = {(t.optimizer, t.number): t.score for t in history[0].trials}
    assert scores == {("sgd", 0): 0.0, ("sgd", 1): 1.0, ("adamw", 2): 2 / 3, ("adamw", 3): 1 / 3}
    best = history[0].best_per_optimizer()
    assert (best["sgd"].number, best["adamw"].number) == (1, 2)


# -- fingerprint ------------------------------------------------------------------------------
class TestFingerprint:
    def test_builtin_task(self, session: Session) -> None:
        spec = task_spec("cnn", "digits", epochs=5, batch_size=64, metric="val_accuracy")
        spec["task"]["direction"] = "maximize"
        fp = fingerprint_for_spec(session, tenant_id(session, "tenant-a"), spec)
        assert fp == {
            "version": 1,
            "model": "cnn",
            "n_parameters": catalog.estimate_parameters("cnn", {}, "digits", {}),
            "modality": "image",
            "task_type": "classification",
            "n_examples": 1797,
            "n_features": 64,
            "n_classes": 10,
            # digits: 174 to 183 examples a class (the catalogue rounds the shares)
            "class_balance": pytest.approx(174 / 183, abs=1e-3),
            "epochs": 5,
            "batch_size": 64,
            "metric": "val_accuracy",
            "direction": "maximize",
        }

    def test_regression_has_zero_classes_and_takes_the_first_objective(
        self, session: Session
    ) -> None:
        spec = task_spec("mlp", "diabetes", model_params={"width": 16, "depth": 1})
        spec["objectives"] = [
            {"metric": "val_r2", "direction": "maximize"},
            {"metric": "train_time", "direction": "minimize"},
        ]
        fp = fingerprint_for_spec(session, tenant_id(session, "tenant-a"), spec)
        assert (fp["n_classes"], fp["class_balance"]) == (0, None)
        assert (fp["metric"], fp["direction"]) == ("val_r2", "maximize")
        assert fp["n_parameters"] == (10 * 16 + 16) + (16 + 1)

    def test_synthetic_dataset_params_change_the_sizes(self, session: Session) -> None:
        spec = task_spec("mlp", "synthetic_classification")
        spec["task"]["dataset"]["params"] = {"n_examples": 5000, "n_features": 7}
        fp = fingerprint_for_spec(session, tenant_id(session, "tenant-a"), spec)
        assert (fp["n_examples"], fp["n_features"], fp["class_balance"]) == (5000, 7, None)

    def test_an_upload_is_read_only_for_its_owner(self, session: Session) -> None:
        owner = tenant_id(session, "tenant-a")
        row = UploadedDataset(
            tenant_id=owner,
            name="mine",
            filename="mine.csv",
            format="csv",
            sha256="0" * 64,
            size_bytes=10,
            task_type="classification",
            modality="tabular",
            n_examples=300,
            n_features=6,
            n_classes=2,
            meta={"class_balance": [0.25, 0.75]},
        )
        session.add(row)
        session.flush()
        spec = task_spec("mlp", str(row.id))
        mine = fingerprint_for_spec(session, owner, spec)
        assert (mine["n_examples"], mine["n_features"], mine["n_classes"]) == (300, 6, 2)
        assert mine["class_balance"] == pytest.approx(1 / 3, abs=1e-4)
        theirs = fingerprint_for_spec(session, tenant_id(session, "tenant-b"), spec)
        assert theirs["n_examples"] is None and theirs["modality"] is None

    def test_balance_ratio(self) -> None:
        assert balance_ratio([0.5, 0.5]) == 1.0
        assert balance_ratio([0.2, 0.8]) == 0.25
        assert balance_ratio(None) is None and balance_ratio([1.0]) is None


# -- task distance ----------------------------------------------------------------------------
class TestTaskDistance:
    def test_identical_is_zero_and_similarity_one(self) -> None:
        scales = {"n_examples": 1.0}
        assert task_distance(FP_IRIS, dict(FP_IRIS), scales) == 0.0
        assert similarity(0.0) == 1.0

    def test_categorical_penalties(self) -> None:
        scales: dict[str, float] = {}
        assert task_distance(FP_IRIS, {**FP_IRIS, "model": "logreg"}, scales) == 1.0
        assert task_distance(FP_IRIS, {**FP_IRIS, "modality": "image"}, scales) == 2.0

    def test_counts_on_a_log_scale_standardised_over_the_history(self) -> None:
        past = [
            PastTask(uuid.uuid4(), {**FP_IRIS, "n_examples": n}, {}, ())
            for n in (99, 999, 9999)  # log1p: ln 100, ln 1000, ln 10000
        ]
        scales = feature_scales(past)
        # the population deviation of ln 100, ln 1000, ln 10000: ln 10 * sqrt(2/3)
        assert scales["n_examples"] == pytest.approx(1.880053, abs=1e-6)
        assert scales["n_features"] == 0.5  # no spread: the floor (a factor of 1.65)
        d = task_distance({"n_examples": 999}, {"n_examples": 9999}, scales)
        assert d == pytest.approx(1.5**0.5, rel=1e-6)  # ln 10 apart: ln 10 / scale

    def test_unknown_in_the_query_is_not_compared_unknown_in_the_past_is_one(self) -> None:
        scales = {"class_balance": 0.1}
        query = {"class_balance": None, "model": None}
        assert task_distance(query, {"class_balance": 0.2, "model": "mlp"}, scales) == 0.0
        assert task_distance({"class_balance": 0.5}, {"class_balance": None}, scales) == 1.0


# -- a configuration's score where it did not run ---------------------------------------------
def test_estimate_takes_the_nearest_trial_in_normalised_space(session: Session) -> None:
    # target scores (minimize, among its 3 trials): lr 0.01 -> 1, lr 1.0 -> 0, adamw -> 0.5
    target = add_job(
        session, "tenant-a", [("sgd", 0.01, 0.1), ("sgd", 1.0, 0.9), ("adamw", 0.001, 0.5)]
    )
    source = add_job(
        session, "tenant-a", [("sgd", 0.012, 0.3), ("sgd", 0.5, 0.2), ("lamb", 0.01, 0.1)]
    )
    history = load_history(session, tenant_id(session, "tenant-a"))
    task, other = _by_job(history, target), _by_job(history, source)
    near_low, near_high, lamb = sorted(other.trials, key=lambda t: t.number)
    # on the log scale of [1e-4, 1], lr 0.012 is nearest to 0.01 and lr 0.5 to 1.0
    assert estimate(task, near_low) == (1.0, [_by_number(task, 0)])
    assert estimate(task, near_high) == (0.0, [_by_number(task, 1)])
    assert estimate(task, lamb) is None  # lamb never ran on the target: unknown
    # a trial of the task itself is estimated by its own score
    assert estimate(task, _by_number(task, 2)) == (0.5, [_by_number(task, 2)])


def _by_number(task: PastTask, number: int) -> Any:
    return next(t for t in task.trials if t.number == number)


# -- nearest ----------------------------------------------------------------------------------
def test_nearest_recommends_the_best_configuration_of_the_nearest_task(session: Session) -> None:
    image = task_spec("cnn", "digits", metric="val_accuracy", direction="maximize")
    tabular = task_spec("mlp", "iris")
    regression = task_spec("mlp", "diabetes")
    jobs = {
        "image": add_job(
            session, "tenant-a", [("sgd", 0.1, 0.80), ("adamw", 0.003, 0.97)], spec=image
        ),
        "tabular": add_job(
            session, "tenant-a", [("sgd", 0.05, 0.2), ("adamw", 0.01, 0.6)], spec=tabular
        ),
        "regression": add_job(
            session, "tenant-a", [("lamb", 0.02, 10.0), ("adamw", 0.1, 30.0)], spec=regression
        ),
    }
    tenant = tenant_id(session, "tenant-a")
    query = fingerprint_for_spec(session, tenant, image)  # jobs' fingerprints: from the spec
    recs = recommend(session, tenant, query, k=1)
    assert [(r.optimizer, r.params) for r in recs] == [
        ("adamw", {"optimizer": "adamw", "adamw.lr": 0.003}),
        ("sgd", {"optimizer": "sgd", "sgd.lr": 0.1}),
    ]
    top = recs[0]
    assert (top.expected_score, top.similarity, top.hyperparameters) == (1.0, 1.0, {"lr": 0.003})
    assert [(s.job_id, s.trial, s.similarity, s.score) for s in top.support] == [
        (jobs["image"], 1, 1.0, 1.0)
    ]
    query_tab = fingerprint_for_spec(session, tenant, tabular)
    assert recommend(session, tenant, query_tab, k=1)[0].params["sgd.lr"] == 0.05


def test_nearest_weights_each_tasks_score_by_its_similarity(session: Session) -> None:
    # A is the query's twin (similarity 1); B differs only in model family (distance 1,
    # similarity 1/2). adamw is best on A, sgd on B, with the same configurations.
    a = add_job(
        session, "tenant-a", [("adamw", 0.001, 0.1), ("sgd", 0.1, 0.5)], fingerprint=FP_IRIS
    )
    b = add_job(
        session,
        "tenant-a",
        [("adamw", 0.001, 0.9), ("sgd", 0.1, 0.2)],
        fingerprint={**FP_IRIS, "model": "logreg"},
    )
    tenant = tenant_id(session, "tenant-a")
    recs = recommend(session, tenant, FP_IRIS, k=2)
    # adamw: (1 * 1 + 0.5 * 0) / 1.5; sgd: (1 * 0 + 0.5 * 1) / 1.5
    assert [(r.optimizer, r.expected_score) for r in recs] == [
        ("adamw", pytest.approx(2 / 3, abs=1e-6)),
        ("sgd", pytest.approx(1 / 3, abs=1e-6)),
    ]
    assert [(s.job_id, s.similarity, s.score) for s in recs[0].support] == [
        (a, 1.0, 1.0),
        (b, 0.5, 0.0),
    ]
    # asked about B's task instead, the order flips
    recs_b = recommend(session, tenant, {**FP_IRIS, "model": "logreg"}, k=2)
    assert _names(recs_b) == ["sgd", "adamw"]
    # k=1 sees A alone
    assert [(r.optimizer, r.expected_score) for r in recommend(session, tenant, FP_IRIS, k=1)] == [
        ("adamw", 1.0),
        ("sgd", 0.0),
    ]


# -- portfolio --------------------------------------------------------------------------------
PORTFOLIO_TASKS = (
    # scores among 5 trials: 1, .75, .5, .25, 0 (minimize); rmsprop only fills the ranks.
    # adamw wins T1 and T2 but is last on T3, lamb the reverse, sgd is second-rate everywhere.
    [("adamw", 0.001, 0.1), ("sgd", 0.1, 0.2), ("rmsprop", 0.001, 0.3), ("rmsprop", 0.01, 0.4),
     ("lamb", 0.01, 0.5)],
    [("adamw", 0.001, 0.1), ("sgd", 0.1, 0.2), ("rmsprop", 0.001, 0.3), ("rmsprop", 0.01, 0.4),
     ("lamb", 0.01, 0.5)],
    [("lamb", 0.01, 0.1), ("rmsprop", 0.001, 0.2), ("rmsprop", 0.01, 0.3), ("sgd", 0.1, 0.4),
     ("adamw", 0.001, 0.5)],
)  # fmt: skip
ALLOWED = ["adamw", "sgd", "lamb"]


def _portfolio_history(session: Session) -> uuid.UUID:
    for trials in PORTFOLIO_TASKS:
        add_job(session, "tenant-a", trials, fingerprint=FP_IRIS)
    return tenant_id(session, "tenant-a")


def test_portfolio_picks_configurations_that_complement_each_other(session: Session) -> None:
    tenant = _portfolio_history(session)
    # mean scores: adamw 2/3, sgd (.75 + .75 + .25) / 3 = .583, lamb 1/3
    nearest = recommend(session, tenant, FP_IRIS, k=3, optimizers=ALLOWED, budget=2)
    assert [(r.optimizer, r.expected_score) for r in nearest] == [
        ("adamw", pytest.approx(2 / 3, abs=1e-6)),
        ("sgd", pytest.approx(0.583333, abs=1e-6)),
    ]
    # greedy: adamw first (2/3); then lamb lifts T3 to 1 (portfolio 1.0), sgd only to .75
    portfolio = recommend(
        session, tenant, FP_IRIS, method="portfolio", k=3, optimizers=ALLOWED, budget=2
    )
    assert _names(portfolio) == ["adamw", "lamb"]
    assert portfolio[1].expected_score == pytest.approx(1 / 3, abs=1e-6)


def test_portfolio_stops_when_nothing_adds_to_it(session: Session) -> None:
    tenant = _portfolio_history(session)
    portfolio = recommend(session, tenant, FP_IRIS, method="portfolio", k=3, optimizers=ALLOWED)
    assert _names(portfolio) == ["adamw", "lamb"]  # sgd adds nothing once both are in
    # a budget asks for a portfolio of that size: what adds nothing fills it, by rank
    filled = recommend(
        session, tenant, FP_IRIS, method="portfolio", k=3, optimizers=ALLOWED, budget=3
    )
    assert _names(filled) == ["adamw", "lamb", "sgd"]
    assert _names(recommend(session, tenant, FP_IRIS, method="portfolio", k=3, budget=1)) == [
        "adamw"
    ]


# -- what history is used ---------------------------------------------------------------------
def test_optimizer_filter_job_ids_and_exclusions(session: Session) -> None:
    a = add_job(
        session, "tenant-a", [("adamw", 0.001, 0.1), ("sgd", 0.1, 0.5)], fingerprint=FP_IRIS
    )
    b = add_job(session, "tenant-a", [("lamb", 0.01, 0.1)], fingerprint=FP_IRIS)
    tenant = tenant_id(session, "tenant-a")
    assert _names(recommend(session, tenant, FP_IRIS, optimizers=["sgd"])) == ["sgd"]
    assert _names(recommend(session, tenant, FP_IRIS, job_ids=[b])) == ["lamb"]
    assert sorted(_names(recommend(session, tenant, FP_IRIS, exclude_job_ids=[b]))) == [
        "adamw",
        "sgd",
    ]
    assert recommend(session, tenant, FP_IRIS, optimizers=["eve"]) == []
    other = tenant_id(session, "tenant-b")
    assert recommend(session, other, FP_IRIS, job_ids=[a, b]) == []  # narrows, never widens


def test_shared_jobs_of_other_tenants_are_used_private_ones_never(session: Session) -> None:
    private = add_job(session, "tenant-b", [("sgd", 0.1, 0.1)], fingerprint=FP_IRIS)
    shared = add_job(session, "tenant-b", [("lamb", 0.01, 0.1)], fingerprint=FP_IRIS, shared=True)
    own = add_job(session, "tenant-a", [("adamw", 0.001, 0.1)], fingerprint=FP_IRIS)
    recs = recommend(session, tenant_id(session, "tenant-a"), FP_IRIS, k=10)
    used = {s.job_id for r in recs for s in r.support}
    assert used == {shared, own} and private not in used


def test_schedule_is_read_back_from_the_params() -> None:
    params = {
        "optimizer": "adamw",
        "adamw.lr": 0.001,
        "schedule": "wsd",
        "wsd.warmup_frac": 0.1,
        "wsd.one_minus_decay_frac": 0.8,
    }
    assert schedule_of(params) == {
        "name": "wsd",
        "warmup_frac": 0.1,
        "decay_frac": pytest.approx(0.2),  # 1 - 0.8, as the worker maps it back
    }
    assert schedule_of({"optimizer": "sgd", "sgd.lr": 0.1}) is None


def test_the_history_query_runs_on_postgresql(
    pg_url: str, data_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same tenancy filter and scores on the production database."""
    from service.db import session_scope
    from service.migrate import upgrade
    from tests.conftest import apply_env

    apply_env(monkeypatch, {"OPTSERVE_DATABASE_URL": pg_url, "OPTSERVE_DATA_DIR": str(data_dir)})
    upgrade()
    try:
        with session_scope() as session:
            for trials in PORTFOLIO_TASKS:
                add_job(session, "tenant-a", trials, fingerprint=FP_IRIS)
            add_job(session, "tenant-b", [("sgd", 0.1, 0.1)], fingerprint=FP_IRIS)
            shared = add_job(
                session, "tenant-b", [("eve", 0.01, 0.1)], fingerprint=FP_IRIS, shared=True
            )
            tenant = tenant_id(session, "tenant-a")
            recs = recommend(session, tenant, FP_IRIS, method="portfolio", k=3, optimizers=ALLOWED)
            assert _names(recs) == ["adamw", "lamb"]
            history = load_history(session, tenant)
            assert len(history) == 4 and history[-1].job_id == shared
    finally:
        apply_env(monkeypatch, {})


def test_a_one_minus_parameter_is_ranged_as_it_is_stored() -> None:
    """``adamw.one_minus_beta2`` holds 1 - beta2: its range is [1 - high, 1 - low]."""
    from service.recommend.index import _ranges

    space = {
        "optimizers": {
            "adamw": {
                "beta2": {
                    "type": "float",
                    "low": 0.9,
                    "high": 0.9999,
                    "log": True,
                    "one_minus": True,
                },
                "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            }
        }
    }
    ranges = _ranges(space)
    one_minus = ranges["adamw.one_minus_beta2"]
    assert (one_minus.low, one_minus.high) == pytest.approx((1e-4, 0.1))
    assert (ranges["adamw.lr"].low, ranges["adamw.lr"].high) == (1e-4, 1e-1)
