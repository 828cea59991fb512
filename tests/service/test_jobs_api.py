"""``/v1/jobs`` over HTTP (TestClient), on a SQLite database built by the migrations.

No worker runs here: messages go to a real kombu file-system broker in a temp folder,
which lets us check what was (and was not) published.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.db import session_scope
from service.models import Job, TrialSlot
from tests.factories import example_job, make_key


def _queued_messages(data_dir: Path) -> int:
    return len(list((data_dir / "broker" / "queue").glob("*.msg")))


def _job_count() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(example_job())
    node: Any = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


class TestSubmitJob:
    def test_accepted_job_is_stored_then_dispatched(
        self, client: TestClient, auth: dict[str, str], data_dir: Path
    ) -> None:
        response = client.post("/v1/jobs", json=example_job(), headers=auth)
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued"
        assert job["counts"]["complete"] == 0
        assert set(job["resolved_space"]["optimizers"]) == {"sgd", "adamw"}
        with session_scope() as session:
            slots = session.scalars(
                select(TrialSlot).where(TrialSlot.job_id == uuid.UUID(job["id"]))
            ).all()
        assert len(slots) == 6
        # max_parallel=2: two slots published, four waiting in the database
        assert sorted(s.status for s in slots) == ["dispatched"] * 2 + ["queued"] * 4
        assert _queued_messages(data_dir) == 2

    @pytest.mark.parametrize(
        ("path", "value", "loc_end"),
        [
            (("search_space", "optimizers", "adamw2"), {}, ["optimizers", "adamw2"]),
            (("search_space", "optimizers", "sgd", "beta3"), 0.5, ["sgd", "beta3"]),
            (
                ("search_space", "optimizers", "sgd", "lr"),
                {"type": "float", "low": 1.0, "high": 0.1},
                ["lr", "float", "high"],
            ),
            (
                ("search_space", "optimizers", "sgd", "lr"),
                {"type": "float", "low": 0.0, "high": 1.0, "log": True},
                ["lr", "float", "low"],
            ),
            (("n_trials",), 0, ["n_trials"]),
            (("n_trials",), 100_000, ["n_trials"]),
            (("n_trials",), "10", ["n_trials"]),
            (("n_trials",), True, ["n_trials"]),
            (("optimzer",), "adamw", ["optimzer"]),
            (("task", "model", "name"), "os.system", ["model", "name"]),
            (("task", "model", "name"), "resnet9000", ["model", "name"]),
            (("task", "model", "params", "width"), 10**9, ["params", "width"]),
            (("task", "metric"), "val_rmse", ["task", "metric"]),
            (("max_parallel",), 7, ["max_parallel"]),
        ],
    )
    def test_bad_input_names_the_field_and_creates_nothing(
        self,
        client: TestClient,
        auth: dict[str, str],
        data_dir: Path,
        path: tuple[Any, ...],
        value: Any,
        loc_end: list[str],
    ) -> None:
        response = client.post("/v1/jobs", json=_with(path, value), headers=auth)
        assert response.status_code == 422, response.text
        locs = [d["loc"] for d in response.json()["detail"]]
        assert any(loc[-len(loc_end) :] == loc_end for loc in locs), locs
        assert _job_count() == 0
        assert _queued_messages(data_dir) == 0

    def test_nan_bound_is_refused(self, client: TestClient, auth: dict[str, str]) -> None:
        body = '{"type": "float", "low": NaN, "high": 1.0}'
        raw = example_job()
        text = (
            __import__("json")
            .dumps(raw)
            .replace('{"type": "float", "low": 0.0, "high": 0.99}', body)
        )
        response = client.post(
            "/v1/jobs", content=text, headers={**auth, "content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        loc = response.json()["detail"][0]["loc"]
        assert loc[-3:] == ["momentum", "float", "low"], loc
        assert _job_count() == 0

    def test_oversized_body_is_413(self, client: TestClient, auth: dict[str, str]) -> None:
        body = example_job(name="x" * 2_000_000)
        response = client.post("/v1/jobs", json=body, headers=auth)
        assert response.status_code == 413

    def test_missing_key_is_401(self, client: TestClient) -> None:
        response = client.post("/v1/jobs", json=example_job())
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert _job_count() == 0

    def test_wrong_key_is_401(self, client: TestClient, api_key: str) -> None:
        forged = api_key[:-3] + ("aaa" if not api_key.endswith("aaa") else "bbb")
        response = client.get("/v1/jobs", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401

    def test_read_only_key_cannot_submit(self, client: TestClient) -> None:
        key = make_key("reader", read_only=True)
        response = client.post(
            "/v1/jobs", json=example_job(), headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 403
        assert _job_count() == 0


class TestTenancy:
    @pytest.fixture
    def job_of_a(self, client: TestClient, auth: dict[str, str]) -> str:
        return str(client.post("/v1/jobs", json=example_job(), headers=auth).json()["id"])

    @pytest.mark.parametrize(
        ("method", "suffix"),
        [
            ("GET", ""),
            ("GET", "/trials"),
            ("GET", "/best"),
            ("GET", "/trials/0/curve"),
            ("POST", "/cancel"),
        ],
    )
    def test_other_tenant_gets_404(
        self, client: TestClient, job_of_a: str, method: str, suffix: str
    ) -> None:
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        response = client.request(method, f"/v1/jobs/{job_of_a}{suffix}", headers=other)
        assert response.status_code == 404
        assert response.json()["detail"][0]["msg"] == "job not found"

    def test_listing_shows_only_own_jobs(
        self, client: TestClient, job_of_a: str, auth: dict[str, str]
    ) -> None:
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        assert client.get("/v1/jobs", headers=other).json()["total"] == 0
        page = client.get("/v1/jobs", headers=auth).json()
        assert page["total"] == 1 and page["items"][0]["id"] == job_of_a

    def test_unknown_job_is_404(self, client: TestClient, auth: dict[str, str]) -> None:
        assert client.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth).status_code == 404


class TestCancel:
    def test_cancel_queued_job(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = client.post("/v1/jobs", json=example_job(), headers=auth).json()["id"]
        job = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth).json()
        assert job["status"] == "cancelled"
        with session_scope() as session:
            statuses = set(
                session.scalars(
                    select(TrialSlot.status).where(TrialSlot.job_id == uuid.UUID(job_id))
                )
            )
        assert statuses == {"cancelled"}


class TestCatalogues:
    def test_optimizers_match_the_registry(self, client: TestClient, auth: dict[str, str]) -> None:
        from optimizers.registry import list_specs

        listed = client.get("/v1/optimizers", headers=auth).json()
        specs = {s.name: s for s in list_specs()}
        assert [o["name"] for o in listed] == list(specs)
        for item in listed:
            spec = specs[item["name"]]
            assert {h["name"]: h["default"] for h in item["hyperparameters"]} == {
                n: (list(d) if isinstance(d, tuple) else d) for n, d in spec.defaults().items()
            }
            assert set(item["default_search_space"]) == set(spec.search_space())

    def test_models_and_datasets(self, client: TestClient, auth: dict[str, str]) -> None:
        models = {m["name"] for m in client.get("/v1/models", headers=auth).json()}
        datasets = {d["name"]: d for d in client.get("/v1/datasets", headers=auth).json()}
        assert {"mlp", "logreg"} <= models
        assert datasets["digits"]["n_classes"] == 10
        assert "val_accuracy" in datasets["digits"]["metrics"]

    def test_health_reports_database_and_broker(self, client: TestClient) -> None:
        body = client.get("/v1/health").json()
        assert body == {**body, "status": "ok", "database": True, "broker": True}
