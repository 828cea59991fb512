"""``GET /v1/jobs/{id}/curves`` and ``GET /v1/jobs/{id}/importance`` over HTTP."""

from __future__ import annotations

import math
import uuid
from typing import Any

from fastapi.testclient import TestClient

from service.jobs.importance import MIN_TRIALS
from service.models import TrialState
from tests.factories import example_job, make_key
from tests.service.trial_rows import add_runs, submit


def sgd_only_job(**overrides: Any) -> dict[str, Any]:
    """One optimizer with two tuned hyperparameters (the value will depend on lr only)."""
    space = {"optimizers": {"sgd": example_job()["search_space"]["optimizers"]["sgd"]}}  # type: ignore[index]
    return {"search_space": space, **overrides}


def lr_only(_i: int, params: dict[str, Any]) -> float:
    """An objective that only the learning rate moves (peak at lr = 10**-1.5)."""
    return -((math.log10(params["sgd.lr"]) + 1.5) ** 2)


class TestCurves:
    def test_page_of_curves_in_number_order(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        add_runs(
            job_id,
            7,
            points=4,
            state=lambda i: TrialState.PRUNED if i == 2 else TrialState.COMPLETE,
        )
        page = client.get(f"/v1/jobs/{job_id}/curves?limit=3&offset=1", headers=auth).json()
        assert (page["total"], page["limit"], page["offset"]) == (7, 3, 1)
        assert [t["number"] for t in page["items"]] == [1, 2, 3]
        first = page["items"][0]
        assert first["state"] == "complete" and first["value"] == 1.0
        assert first["value_kind"] == "finite"
        assert first["optimizer"] in ("sgd", "adamw")
        assert [p["epoch"] for p in first["points"]] == [1, 2, 3, 4]
        assert page["items"][1]["state"] == "pruned" and page["items"][1]["value"] is None
        # the same points as the one-trial endpoint
        single = client.get(f"/v1/jobs/{job_id}/trials/1/curve", headers=auth).json()
        assert first["points"] == single["points"]

    def test_metric_keeps_one_metric(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        add_runs(job_id, 2, points=2)
        page = client.get(f"/v1/jobs/{job_id}/curves?metric=val_loss", headers=auth).json()
        assert {tuple(p["metrics"]) for t in page["items"] for p in t["points"]} == {("val_loss",)}
        page = client.get(f"/v1/jobs/{job_id}/curves?metric=nothing", headers=auth).json()
        assert all(p["metrics"] == {} for t in page["items"] for p in t["points"])

    def test_bad_queries_name_the_field(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        for query, field in [
            ("limit=0", "limit"),
            ("offset=-1", "offset"),
            ("metric=a%20b", "metric"),
        ]:
            response = client.get(f"/v1/jobs/{job_id}/curves?{query}", headers=auth)
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["loc"] == ["query", field]

    def test_another_tenants_job_is_404(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        assert client.get(f"/v1/jobs/{job_id}/curves", headers=other).status_code == 404
        assert client.get(f"/v1/jobs/{uuid.uuid4()}/curves", headers=auth).status_code == 404
        assert client.get(f"/v1/jobs/{job_id}/curves").status_code == 401


class TestImportance:
    def test_too_few_trials_is_empty_not_an_error(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job_id = submit(client, auth, **sgd_only_job())
        add_runs(job_id, MIN_TRIALS - 1, value=lr_only)
        body = client.get(f"/v1/jobs/{job_id}/importance", headers=auth).json()
        assert body == {
            "metric": "val_accuracy",
            "importances": {},
            "n_trials": MIN_TRIALS - 1,
            "method": "ped_anova",
        }

    def test_the_parameter_that_matters_ranks_first(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        job_id = submit(client, auth, **sgd_only_job())
        add_runs(job_id, 40, value=lr_only)
        # pruned and failed runs take no part
        add_runs(job_id, 5, start=40, state=lambda _i: TrialState.FAIL, seed=1)
        for method in ("ped_anova", "fanova"):
            response = client.get(f"/v1/jobs/{job_id}/importance?method={method}", headers=auth)
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["method"], body["n_trials"]) == (method, 40)
            scores = body["importances"]
            assert set(scores) >= {"sgd.lr", "sgd.momentum"}
            assert scores["sgd.lr"] == max(scores.values()), scores
            assert scores["sgd.lr"] > 2 * scores["sgd.momentum"], scores

    def test_one_optimizers_trials(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)  # sgd and adamw
        add_runs(job_id, 30, value=lambda i, p: lr_only(i, p) if "sgd.lr" in p else -5.0)
        body = client.get(f"/v1/jobs/{job_id}/importance?optimizer=sgd", headers=auth).json()
        assert 0 < body["n_trials"] < 30
        assert body["importances"] and all(
            name.startswith("sgd.") or name == "optimizer" for name in body["importances"]
        )
        response = client.get(f"/v1/jobs/{job_id}/importance?optimizer=lamb", headers=auth)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "optimizer"]

    def test_bad_method_and_foreign_job(self, client: TestClient, auth: dict[str, str]) -> None:
        job_id = submit(client, auth)
        response = client.get(f"/v1/jobs/{job_id}/importance?method=shap", headers=auth)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "method"]
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        assert client.get(f"/v1/jobs/{job_id}/importance", headers=other).status_code == 404
