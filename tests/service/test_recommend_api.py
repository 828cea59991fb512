"""``POST /v1/recommendations`` through the app: answers, tenancy and validation."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.factories import make_key
from tests.service.recommend_factories import add_job, task_spec

URL = "/v1/recommendations"
CNN_DIGITS = {"model": {"name": "cnn"}, "dataset": {"name": "digits"}}
META = {"modality": "tabular", "n_examples": 150, "n_features": 4, "n_classes": 3}
TASK = ["body", "task"]
META_LOC = ["body", "meta_features"]


def _history(tenant: str, trials: list[tuple[Any, ...]], **kwargs: Any) -> str:
    from service.db import session_scope

    with session_scope() as session:
        return str(add_job(session, tenant, trials, **kwargs))


def _loc(response: Any) -> list[Any]:
    assert response.status_code == 422, response.text
    return list(response.json()["detail"][0]["loc"])


def _support(answer: dict[str, Any]) -> set[str]:
    return {s["job_id"] for item in answer["items"] for s in item["support"]}


class TestAnswer:
    def test_catalogue_task(self, client: TestClient, auth: dict[str, str]) -> None:
        image = task_spec("cnn", "digits", metric="val_accuracy", direction="maximize")
        job = _history("tenant-a", [("sgd", 0.1, 0.8), ("adamw", 0.003, 0.97)], spec=image)
        _history("tenant-a", [("lamb", 0.01, 0.3)], spec=task_spec("mlp", "diabetes"))
        body = {"task": {**CNN_DIGITS, "epochs": 10, "metric": "val_accuracy"}, "k": 1}
        response = client.post(URL, json=body, headers=auth)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["method"], answer["k"], answer["n_past_tasks"]) == ("nearest", 1, 2)
        fp = answer["fingerprint"]
        assert (fp["model"], fp["modality"], fp["n_classes"], fp["direction"]) == (
            "cnn",
            "image",
            10,
            "maximize",  # the metric's own direction
        )
        first = answer["items"][0]
        assert first == {
            "rank": 1,
            "optimizer": "adamw",
            "params": {"optimizer": "adamw", "adamw.lr": 0.003},
            "hyperparameters": {"lr": 0.003},
            "schedule": None,
            "expected_score": 1.0,
            "similarity": 1.0,  # the same task (batch_size not given: not compared)
            "support": [{"job_id": job, "trial": 1, "similarity": 1.0, "score": 1.0}],
        }
        body["task"]["epochs"] = 40  # 4x the epochs: less similar, same advice
        again = client.post(URL, json=body, headers=auth).json()["items"][0]
        assert again["optimizer"] == "adamw" and 0 < again["similarity"] < 1

    def test_meta_features_and_portfolio(self, client: TestClient, auth: dict[str, str]) -> None:
        _history("tenant-a", [("adamw", 0.001, 0.1), ("sgd", 0.1, 0.2)])
        body = {"meta_features": META, "method": "portfolio", "budget": 1}
        answer = client.post(URL, json=body, headers=auth).json()
        assert [i["optimizer"] for i in answer["items"]] == ["adamw"]

    def test_uploaded_dataset_id(self, client: TestClient, auth: dict[str, str]) -> None:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(80, 5)).astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, X=x, y=(x[:, 0] > 0).astype(np.int64))
        files = {"file": ("d.npz", buf.getvalue(), "application/octet-stream")}
        upload = client.post("/v1/datasets", headers=auth, files=files)
        assert upload.status_code in (200, 201), upload.text
        dataset_id = upload.json()["id"]
        body = {"task": {"model": {"name": "mlp"}, "dataset": {"name": dataset_id}}}
        answer = client.post(URL, json=body, headers=auth).json()
        assert answer["fingerprint"]["n_examples"] == 80
        assert answer["fingerprint"]["n_features"] == 5
        assert answer["items"] == [] and answer["n_past_tasks"] == 0
        # another tenant cannot name it
        other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
        assert _loc(client.post(URL, json=body, headers=other)) == [
            "body",
            "task",
            "dataset",
            "name",
        ]

    def test_needs_a_key(self, client: TestClient) -> None:
        assert client.post(URL, json={"meta_features": META}).status_code == 401

    def test_read_only_key_suffices(self, client: TestClient, sqlite_env: Any) -> None:
        auth = {"Authorization": f"Bearer {make_key('tenant-a', read_only=True)}"}
        assert client.post(URL, json={"meta_features": META}, headers=auth).status_code == 200


def test_a_tenant_never_learns_from_another_tenants_private_jobs(
    client: TestClient, auth: dict[str, str]
) -> None:
    auth_b = {"Authorization": f"Bearer {make_key('tenant-b')}"}
    own = _history("tenant-a", [("adamw", 0.001, 0.2)])
    private_b = _history("tenant-b", [("sgd", 0.1, 0.1)])
    shared_b = _history("tenant-b", [("lamb", 0.01, 0.1)], shared=True)
    _history("tenant-b", [("rmsprop", 0.01, 0.1)], status="running", shared=True)
    body = {"meta_features": META, "k": 100}

    answer_a = client.post(URL, json=body, headers=auth).json()
    assert _support(answer_a) == {own, shared_b}
    assert {i["optimizer"] for i in answer_a["items"]} == {"adamw", "lamb"}
    assert answer_a["n_past_tasks"] == 2

    answer_b = client.post(URL, json=body, headers=auth_b).json()
    assert _support(answer_b) == {private_b, shared_b}
    assert own not in _support(answer_b)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"task": {**CNN_DIGITS, "model": {"name": "vgg"}}}, ["body", "task", "model", "name"]),
        (
            {"task": {**CNN_DIGITS, "dataset": {"name": "mnist"}}},
            ["body", "task", "dataset", "name"],
        ),
        (
            {"task": {**CNN_DIGITS, "dataset": {"name": "00000000-0000-0000-0000-000000000000"}}},
            ["body", "task", "dataset", "name"],
        ),
        (
            {"task": {**CNN_DIGITS, "model": {"name": "cnn", "params": {"channels": 1000}}}},
            ["body", "task", "model", "params", "channels"],
        ),
        (
            {"task": {**CNN_DIGITS, "model": {"name": "cnn", "params": {"width": 3}}}},
            ["body", "task", "model", "params", "width"],
        ),
        (
            {"task": {"model": {"name": "mlp"}, "dataset": {"name": "iris", "params": {"n": 1}}}},
            ["body", "task", "dataset", "params", "n"],
        ),
        (
            {"task": {"model": {"name": "cnn"}, "dataset": {"name": "iris"}}},
            ["body", "task", "dataset", "name"],
        ),
        ({"task": {**CNN_DIGITS, "metric": "val_rmse"}}, ["body", "task", "metric"]),
        ({"task": {**CNN_DIGITS, "epochs": 0}}, ["body", "task", "epochs"]),
        ({"meta_features": {**META, "n_examples": 0}}, ["body", "meta_features", "n_examples"]),
        ({"meta_features": {**META, "n_classes": -1}}, ["body", "meta_features", "n_classes"]),
        ({"meta_features": {**META, "n_classes": 1}}, ["body", "meta_features", "n_classes"]),
        (
            {"meta_features": {**META, "class_balance": 1.5}},
            ["body", "meta_features", "class_balance"],
        ),
        (
            {"meta_features": {**META, "n_classes": 0, "class_balance": 0.5}},
            ["body", "meta_features", "class_balance"],
        ),
        ({"meta_features": {**META, "n_examples": "10"}}, ["body", "meta_features", "n_examples"]),
        ({"meta_features": {**META, "modality": "audio"}}, ["body", "meta_features", "modality"]),
        ({"meta_features": {**META, "model": "vgg"}}, ["body", "meta_features", "model"]),
        ({"meta_features": {**META, "metric": "val_f1"}}, ["body", "meta_features", "metric"]),
        ({"meta_features": META, "budget": 0}, ["body", "budget"]),
        ({"meta_features": META, "k": 0}, ["body", "k"]),
        ({"meta_features": META, "method": "bayes"}, ["body", "method"]),
        ({"meta_features": META, "optimizers": ["adamw", "adamx"]}, ["body", "optimizers", 1]),
        ({"meta_features": META, "optimizers": ["sgd", "sgd"]}, ["body", "optimizers", 1]),
        ({"meta_features": META, "optimizers": []}, ["body", "optimizers"]),
        ({"meta_features": META, "task": CNN_DIGITS}, ["body", "meta_features"]),
        ({"method": "nearest"}, ["body", "task"]),
        ({"meta_features": META, "colour": "red"}, ["body", "colour"]),
    ],
)
def test_validation_names_the_field(
    client: TestClient, auth: dict[str, str], body: dict[str, Any], loc: list[Any]
) -> None:
    assert _loc(client.post(URL, json=body, headers=auth)) == loc
