"""A job on an uploaded dataset, through the API and the real trial function (issue 3)."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.factories import dataset_file, example_job, make_key
from workers.trial_runner import run_trial


def _upload(client: TestClient, auth: dict[str, str], fmt: str = "npz") -> str:
    filename, data, form = dataset_file(fmt)
    files = {"file": (filename, data, "application/octet-stream")}
    response = client.post("/v1/datasets", files=files, data=form, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _task(dataset: str, **model_params: int) -> dict[str, object]:
    return {
        "model": {"name": "mlp", "params": {"width": 32, **model_params}},
        "dataset": {"name": dataset},
        "epochs": 2,
        "batch_size": 32,
        "metric": "val_accuracy",
        "seed": 0,
    }


@pytest.mark.parametrize("fmt", ["npz", "csv", "parquet"])
def test_upload_tune_two_trials_then_delete(
    client: TestClient, auth: dict[str, str], fmt: str
) -> None:
    dataset_id = _upload(client, auth, fmt)
    listed = {d["name"] for d in client.get("/v1/datasets", headers=auth).json()}
    assert dataset_id in listed
    body = example_job(task=_task(dataset_id), n_trials=2, max_parallel=1)
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.json()["spec"]["task"]["direction"] == "maximize"  # from the metric
    for slot in range(2):
        assert run_trial(job_id, slot, "w1").endswith(("complete", "pruned"))
    job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert job["status"] == "completed", job
    assert job["best"]["value"] > 0.6
    assert client.delete(f"/v1/datasets/{dataset_id}", headers=auth).status_code == 204
    listed = {d["name"] for d in client.get("/v1/datasets", headers=auth).json()}
    assert dataset_id not in listed


def test_another_tenants_upload_cannot_be_tuned(client: TestClient, auth: dict[str, str]) -> None:
    dataset_id = _upload(client, auth)
    other = {"Authorization": f"Bearer {make_key('tenant-b')}"}
    response = client.post("/v1/jobs", json=example_job(task=_task(dataset_id)), headers=other)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "task", "dataset", "name"]
    unknown = example_job(task=_task(str(uuid.uuid4())))
    assert client.post("/v1/jobs", json=unknown, headers=auth).status_code == 422


def test_model_over_the_parameter_limit_is_refused(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = example_job(task=_task("digits", width=4096, depth=8))
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "task", "model", "params"]
