"""``optserve recommend`` (through the real app) and the admin's ``optserve share-job``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service import cli
from service.client import Client
from service.recommend.cli import parse_assignments, request_body
from tests.service.recommend_factories import add_job, task_spec

runner = CliRunner()


@pytest.fixture
def via_app(client: TestClient, api_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's client sends its requests to the app under test instead of a socket."""
    monkeypatch.setattr(
        cli, "_client", lambda url, key: Client("http://testserver", api_key, http=client)
    )


def _job(tenant: str, **kwargs: Any) -> uuid.UUID:
    from service.db import session_scope

    image = task_spec("cnn", "digits", metric="val_accuracy", direction="maximize")
    trials = [("sgd", 0.1, 0.8), ("adamw", 0.003, 0.97)]
    with session_scope() as session:
        return add_job(session, tenant, trials, spec=image, **kwargs)


def _shared(job_id: uuid.UUID) -> bool:
    from service.db import session_scope
    from service.models import Job

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.shared


def test_request_body_from_options() -> None:
    params = parse_assignments(["channels=64", "act=gelu", "drop=0.1"], "--model-param")
    assert params == {"channels": 64, "act": "gelu", "drop": 0.1}
    body = request_body(
        model="cnn",
        dataset="digits",
        model_params=params,
        dataset_params={},
        epochs=None,
        batch_size=128,
        metric=None,
        method="portfolio",
        k=3,
        optimizers="adamw, sgd",
        budget=2,
    )
    assert body == {
        "task": {
            "model": {"name": "cnn", "params": params},
            "dataset": {"name": "digits", "params": {}},
            "batch_size": 128,
        },
        "method": "portfolio",
        "k": 3,
        "optimizers": ["adamw", "sgd"],
        "budget": 2,
    }


def test_recommend_prints_the_ranking(via_app: None) -> None:
    job = _job("tenant-a")
    args = ["recommend", "--model", "cnn", "--dataset", "digits"]
    result = runner.invoke(cli.app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert [i["optimizer"] for i in answer["items"]] == ["adamw", "sgd"]
    assert answer["items"][0]["support"][0]["job_id"] == str(job)
    table = runner.invoke(cli.app, args)
    assert table.exit_code == 0 and "adamw" in table.output and "lr=0.003" in table.output


def test_recommend_shows_the_field_at_fault(via_app: None) -> None:
    args = ["recommend", "--model", "cnn", "--model-param", "channels=1000", "--dataset", "digits"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1
    assert '"channels"' in result.output and "error 422" in result.output


def test_share_job_and_unshare(sqlite_env: dict[str, str]) -> None:
    job = _job("tenant-b")
    assert not _shared(job)
    result = runner.invoke(cli.app, ["share-job", str(job)])
    assert result.exit_code == 0, result.output
    assert _shared(job)
    assert runner.invoke(cli.app, ["share-job", str(job), "--unshare"]).exit_code == 0
    assert not _shared(job)


def test_share_job_refuses_unknown_jobs(sqlite_env: dict[str, str]) -> None:
    assert runner.invoke(cli.app, ["share-job", str(uuid.uuid4())]).exit_code == 1
    assert runner.invoke(cli.app, ["share-job", "not-a-uuid"]).exit_code == 2
