"""``warm_start`` on ``POST /v1/jobs``: validation, resolution against the history, ``narrow``.

The history is hand-made (completed jobs whose trials are inserted as rows), so each
expected configuration is known; the recommender is the real one (service.recommend).
The worker side is in tests/workers/test_warm_start_worker.py and, on real processes,
tests/e2e/test_warm_start_e2e.py.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api_schemas import JobCreate
from service.db import session_scope
from service.models import Job, TrialRun
from tests.factories import example_job, make_key

SGD_ONLY = {
    "optimizers": {
        "sgd": {
            "lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
            "momentum": {"type": "float", "low": 0.0, "high": 0.99},
        }
    }
}


def post(client: TestClient, auth: dict[str, str], body: dict[str, Any]) -> Any:
    return client.post("/v1/jobs", json=body, headers=auth)


def submit(client: TestClient, auth: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = post(client, auth, example_job(**overrides))
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def past_job(
    client: TestClient,
    auth: dict[str, str],
    trials: list[tuple[str, dict[str, float], float]],
    **overrides: Any,
) -> str:
    """A completed job whose trials are ``(optimizer, hyperparameters, val_accuracy)``."""
    job = submit(client, auth, **overrides)
    with session_scope() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None
        row.status = "completed"
        for n, (optimizer, hps, value) in enumerate(trials):
            params = {"optimizer": optimizer, **{f"{optimizer}.{k}": v for k, v in hps.items()}}
            session.add(
                TrialRun(
                    job_id=row.id,
                    slot=n,
                    attempt=1,
                    number=n,
                    state="complete",
                    optimizer=optimizer,
                    params=params,
                    hyperparameters=dict(hps),
                    value=value,
                )
            )
    return str(job["id"])


def warm(job: dict[str, Any]) -> dict[str, Any]:
    return job["resolved_space"]["warm_start"]  # type: ignore[no-any-return]


def locs(response: Any) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


HISTORY = [
    ("sgd", {"lr": 0.05, "momentum": 0.9}, 0.95),
    ("sgd", {"lr": 0.5, "momentum": 0.1}, 0.80),
    ("adamw", {"lr": 0.003, "weight_decay": 1e-4, "beta2": 0.999}, 0.97),
    ("adamw", {"lr": 0.05, "weight_decay": 0.01, "beta2": 0.999}, 0.60),
]


class TestValidation:
    def _errors(self, **overrides: Any) -> list[tuple[Any, ...]]:
        with pytest.raises(ValidationError) as info:
            JobCreate.model_validate(example_job(**overrides))
        return [e["loc"] for e in info.value.errors()]

    def test_defaults(self) -> None:
        job = JobCreate.model_validate(example_job(warm_start={"from": "similar"}))
        assert job.warm_start is not None
        assert job.warm_start.model_dump(mode="json") == {
            "from": "similar",
            "k": 5,
            "method": "nearest",
            "narrow": False,
        }

    def test_each_bad_field_is_named(self) -> None:
        bad = {"from": "similar", "k": 0, "method": "best", "narrow": "yes", "extra": 1}
        assert sorted(self._errors(warm_start=bad)) == sorted(
            [
                ("warm_start", "k"),
                ("warm_start", "method"),
                ("warm_start", "narrow"),
                ("warm_start", "extra"),
            ]
        )
        assert self._errors(warm_start={"from": "similar", "k": 51}) == [("warm_start", "k")]
        assert self._errors(warm_start={"k": 2}) == [("warm_start", "from")]

    def test_from_errors_name_the_index(self) -> None:
        job_id = str(uuid.uuid4())
        errors = self._errors(warm_start={"from": [job_id, "not-a-uuid", job_id, 7]})
        assert errors == [("warm_start", "from", i) for i in (1, 2, 3)]
        assert self._errors(warm_start={"from": []}) == [("warm_start", "from")]
        assert self._errors(warm_start={"from": "others"}) == [("warm_start", "from")]

    def test_k_may_not_exceed_n_trials(self) -> None:
        errors = self._errors(n_trials=3, max_parallel=1, warm_start={"from": "similar", "k": 4})
        assert errors == [("warm_start", "k")]

    @pytest.mark.parametrize(
        "overrides",
        [
            {"mode": "compare"},
            {"mode": "sweep", "n_trials": 14},
            {"sampler": {"name": "grid"}},
        ],
        ids=["compare", "sweep", "grid"],
    )
    def test_refused_where_slots_are_pinned(self, overrides: dict[str, Any]) -> None:
        errors = self._errors(warm_start={"from": "similar"}, **overrides)
        assert ("warm_start",) in errors

    def test_the_api_answers_422_with_the_body_path(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        body = example_job(warm_start={"from": [str(uuid.uuid4()), "x"]})
        assert locs(post(client, auth, body)) == [["body", "warm_start", "from", 1]]


class TestResolution:
    def test_every_job_gets_a_fingerprint(self, client: TestClient, auth: dict[str, str]) -> None:
        job = submit(client, auth)
        assert warm(job) is None
        with session_scope() as session:
            row = session.get(Job, uuid.UUID(job["id"]))
            assert row is not None and row.fingerprint is not None
            assert row.fingerprint["model"] == "mlp"
            assert row.fingerprint["metric"] == "val_accuracy"

    def test_best_configuration_of_each_optimizer_with_its_source(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        past = past_job(client, auth, HISTORY)
        job = submit(client, auth, warm_start={"from": [past], "k": 2})
        configs = warm(job)["configurations"]
        # ranked by the recommender's expected score: adamw's 0.97 is the job's best trial
        assert [c["params"] for c in configs] == [
            {"optimizer": "adamw", "adamw.lr": 0.003, "adamw.weight_decay": 1e-4},
            {"optimizer": "sgd", "sgd.lr": 0.05, "sgd.momentum": 0.9},
        ]
        assert [(c["source"]["job_id"], c["source"]["trial"]) for c in configs] == [
            (past, 2),
            (past, 0),
        ]
        assert all(c["source"]["kind"] == "warm_start" for c in configs)
        assert all(c["source"]["similarity"] == pytest.approx(1.0) for c in configs)
        assert all(c["adjusted"] == [] for c in configs)
        assert warm(job)["narrowed"] == {}
        # read back as stored
        again = client.get(f"/v1/jobs/{job['id']}", headers=auth).json()
        assert warm(again) == warm(job)
        assert again["spec"]["warm_start"]["from"] == [past]

    def test_configurations_are_fitted_into_the_new_space(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        past = past_job(client, auth, HISTORY)
        space = {
            "optimizers": {
                "sgd": {
                    "lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
                    "momentum": 0.5,
                },
                "adamw": {
                    "beta2": {
                        "type": "float",
                        "low": 0.9,
                        "high": 0.9999,
                        "log": True,
                        "one_minus": True,
                    },
                    "weight_decay": {"type": "categorical", "choices": [0.0, 0.1]},
                },
            }
        }
        job = submit(client, auth, search_space=space, warm_start={"from": [past], "k": 2})
        adamw, sgd = warm(job)["configurations"]
        # sgd.lr 0.05 is clipped to the new high; momentum (fixed here) is not a parameter
        assert sgd["params"] == {"optimizer": "sgd", "sgd.lr": 0.01}
        assert sgd["adjusted"] == ["sgd.lr"]
        # beta2 is sampled as 1 - x here: taken from the past hyperparameter; the
        # weight decay the new space does not offer is left to the sampler
        assert adamw["params"]["adamw.lr"] == 0.003
        assert adamw["params"]["adamw.one_minus_beta2"] == pytest.approx(0.001)
        assert "adamw.weight_decay" not in adamw["params"]
        assert adamw["adjusted"] == ["adamw.weight_decay"]

    def test_only_the_jobs_optimizers_and_at_most_k(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        past = past_job(client, auth, HISTORY)
        job = submit(client, auth, search_space=SGD_ONLY, warm_start={"from": [past], "k": 1})
        (config,) = warm(job)["configurations"]
        assert config["params"]["optimizer"] == "sgd"

    def test_similar_without_history_starts_cold(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job = submit(client, auth, warm_start={"from": "similar"})
        assert warm(job) == {"configurations": [], "narrowed": {}}

    def test_listed_jobs_without_a_usable_trial_are_refused(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        past = past_job(client, auth, [("adamw", {"lr": 0.003}, 0.9)])
        body = example_job(search_space=SGD_ONLY, warm_start={"from": [past]})
        assert locs(post(client, auth, body)) == [["body", "warm_start", "from"]]


class TestNarrow:
    def test_box_around_the_past_optima(self, client: TestClient, auth: dict[str, str]) -> None:
        for lr, momentum in ((0.01, 0.5), (0.1, 0.9)):
            past_job(
                client,
                auth,
                [("sgd", {"lr": lr, "momentum": momentum}, 0.9)],
                search_space=SGD_ONLY,
            )
        job = submit(
            client,
            auth,
            search_space=SGD_ONLY,
            warm_start={"from": "similar", "k": 2, "narrow": True},
        )
        configs = warm(job)["configurations"]
        assert sorted(c["params"]["sgd.lr"] for c in configs) == [0.01, 0.1]
        lr = job["resolved_space"]["optimizers"]["sgd"]["lr"]
        momentum = job["resolved_space"]["optimizers"]["sgd"]["momentum"]
        # log range 1e-3..1: widened by a tenth of its log width, 1000 ** 0.1 each side
        widen = 1000**0.1
        assert lr["low"] == pytest.approx(0.01 / widen) and lr["high"] == pytest.approx(0.1 * widen)
        assert lr["log"] is True
        # linear range 0..0.99: 0.099 each side, never past the original range
        assert momentum["low"] == pytest.approx(0.401) and momentum["high"] == 0.99
        assert warm(job)["narrowed"] == {
            "sgd.lr": {
                "low": lr["low"],
                "high": lr["high"],
                "original_low": 0.001,
                "original_high": 1.0,
            },
            "sgd.momentum": {
                "low": momentum["low"],
                "high": 0.99,
                "original_low": 0.0,
                "original_high": 0.99,
            },
        }
        for config in configs:
            assert lr["low"] <= config["params"]["sgd.lr"] <= lr["high"]

    def test_a_single_optimum_is_not_a_box(self, client: TestClient, auth: dict[str, str]) -> None:
        past = past_job(client, auth, HISTORY)
        job = submit(
            client,
            auth,
            search_space=SGD_ONLY,
            warm_start={"from": [past], "k": 1, "narrow": True},
        )
        assert warm(job)["narrowed"] == {}
        assert job["resolved_space"]["optimizers"]["sgd"]["lr"]["low"] == 0.001

    def test_int_and_one_minus_ranges(self) -> None:
        from api_schemas.search_space import FloatParam, IntParam, ResolvedSpace
        from service.jobs.warm_space import narrow

        resolved = ResolvedSpace(
            optimizers={
                "x": {
                    "n": IntParam(low=1, high=100),
                    "b": FloatParam(low=0.9, high=0.9999, log=True, one_minus=True),
                }
            }
        )
        out = narrow(
            resolved, [{"x.n": 10, "x.one_minus_b": 0.01}, {"x.n": 20, "x.one_minus_b": 0.001}]
        )
        n, b = resolved.optimizers["x"]["n"], resolved.optimizers["x"]["b"]
        assert isinstance(n, IntParam) and (n.low, n.high) == (1, 30)  # 9.9 each side, outwards
        assert isinstance(b, FloatParam) and b.one_minus
        # 1 - x in 1e-4..0.1 (log): the box 0.001..0.01 widened by 1000 ** 0.1
        assert 1 - b.high == pytest.approx(0.001 / 1000**0.1)
        assert 1 - b.low == pytest.approx(0.01 * 1000**0.1)
        assert set(out) == {"x.n", "x.one_minus_b"}
        assert math.isclose(out["x.one_minus_b"].original_high, 0.9999)


class TestTenancy:
    def test_another_tenants_private_job_is_unknown_until_shared(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        theirs = past_job(client, other, HISTORY)
        body = example_job(warm_start={"from": [theirs], "k": 1})
        response = post(client, auth, body)
        assert locs(response) == [["body", "warm_start", "from", 0]]
        assert "not found" in response.json()["detail"][0]["msg"]
        with session_scope() as session:
            row = session.get(Job, uuid.UUID(theirs))
            assert row is not None
            row.shared = True
        response = post(client, auth, body)
        assert response.status_code == 202, response.text
        assert warm(response.json())["configurations"][0]["source"]["job_id"] == theirs

    def test_unknown_and_unfinished_jobs_are_named_by_index(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        past = past_job(client, auth, HISTORY)
        running = submit(client, auth)["id"]
        body = example_job(warm_start={"from": [past, str(uuid.uuid4())]})
        assert locs(post(client, auth, body)) == [["body", "warm_start", "from", 1]]
        body = example_job(warm_start={"from": [past, running]})
        response = post(client, auth, body)
        assert locs(response) == [["body", "warm_start", "from", 1]]
        assert "queued" in response.json()["detail"][0]["msg"]


class TestFit:
    """Fitting a past configuration into a space (pure: service.jobs.warm_space)."""

    def test_grids_ints_and_choices(self) -> None:
        from api_schemas.search_space import (
            CategoricalParam,
            FixedParam,
            FloatParam,
            IntParam,
            ResolvedSpace,
        )
        from service.jobs.warm_space import fit

        resolved = ResolvedSpace(
            optimizers={
                "x": {
                    "f": FloatParam(low=0.0, high=1.0, step=0.25),
                    "n": IntParam(low=2, high=10, step=2),
                    "c": CategoricalParam(choices=[1, "a"]),
                    "b": CategoricalParam(choices=[True, False]),
                    "z": FixedParam(value=3),
                },
                "y": {"f": FloatParam(low=0.0, high=1.0)},
            }
        )
        past = {"x.f": 0.6, "x.n": 7.2, "x.c": 1.0, "x.b": 0, "x.z": 9, "y.f": 0.5}
        fitted = fit(resolved, "x", past, {}, None)
        assert fitted is not None
        # onto the step grids; 1.0 is the choice 1, but 0 is not the flag False
        assert fitted.params == {"optimizer": "x", "x.f": 0.5, "x.n": 8, "x.c": 1}
        assert fitted.adjusted == ["x.f", "x.n", "x.b"]
        assert fit(resolved, "w", past, {}, None) is None
