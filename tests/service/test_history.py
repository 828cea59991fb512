"""Seed history: the suite, an inline seed run, export/import round trips and bad files.

Everything runs in-process on SQLite built by the migrations: real trials (the
worker's ``run_trial``), real Optuna storage, the real recommender.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from api_schemas import JobCreate
from service.db import session_scope
from service.history import transfer
from service.history.runner import run_inline
from service.history.suite import SEED_OPTIMIZERS, Suite, get_suite
from service.models import CurvePoint, Job, TrialRun, TrialSlot
from service.tenants.service import get_or_create_tenant
from tests.conftest import apply_env
from workers import catalog


def one_task_suite() -> Suite:
    """The tiny suite's first task only: two trials, a couple of seconds."""
    tiny = get_suite("tiny")
    return dataclasses.replace(tiny, tasks=tiny.tasks[:1])


def counts() -> dict[str, int]:
    with session_scope() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Job, TrialSlot, TrialRun, CurvePoint)
        }


def tenant_id(name: str) -> uuid.UUID:
    with session_scope() as session:
        return get_or_create_tenant(session, name).id


def export_all() -> transfer.HistoryFile:
    with session_scope() as session:
        return transfer.export_history(session, tenant_id=None)


def use_fresh_database(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    from service.migrate import upgrade

    folder.mkdir()
    apply_env(monkeypatch, {"OPTSERVE_DATA_DIR": str(folder), "OPTSERVE_ENV": "testing"})
    upgrade()


class TestSuite:
    def test_small_suite_covers_every_model_on_every_compatible_dataset(self) -> None:
        keys = {t.key for t in get_suite("small").tasks}
        expected = {
            f"{m.name}-{d.name}"
            for m in catalog.list_model_specs()
            for d in catalog.compatible_datasets(m)
        }
        assert keys == expected
        assert len(keys) >= 8

    @pytest.mark.parametrize("name", ["small", "tiny"])
    def test_every_job_body_is_a_valid_job(self, name: str) -> None:
        suite = get_suite(name)
        for body in suite.job_bodies():
            job = JobCreate.model_validate(body)
            assert set(job.search_space.optimizers) == set(suite.optimizers)
            assert job.n_trials == suite.n_trials

    def test_small_suite_tunes_several_optimizers_on_small_models(self) -> None:
        suite = get_suite("small")
        assert set(SEED_OPTIMIZERS) >= {"sgd", "adamw", "radam", "ademamix"}
        (lm,) = [t for t in suite.tasks if t.model == "transformer"]
        size = catalog.estimate_parameters(lm.model, lm.model_params, lm.dataset, lm.dataset_params)
        assert size < 50_000 and lm.epochs <= 3

    def test_unknown_suite_is_refused_by_name(self) -> None:
        with pytest.raises(ValueError, match="Unknown suite 'huge'"):
            get_suite("huge")


class TestSeedInline:
    def test_tiny_suite_creates_finished_shared_jobs_with_fingerprints(
        self, sqlite_env: dict[str, str], data_dir: Path
    ) -> None:
        from service.recommend.engine import recommend

        suite = get_suite("tiny")
        results = run_inline(suite, tenant="seeds", share=True)
        assert [r.status for r in results] == ["completed"] * len(suite.tasks)
        assert all(r.created for r in results)
        with session_scope() as session:
            jobs = list(session.scalars(select(Job)))
            assert len(jobs) == len(suite.tasks)
            for job in jobs:
                assert job.fingerprint is not None and job.fingerprint["model"] in catalog.MODELS
                assert job.shared
            runs = list(session.scalars(select(TrialRun)))
            assert len(runs) == len(suite.tasks) * suite.n_trials
            assert {r.state for r in runs} == {"complete"}
        assert counts()["curve_points"] == sum(t.epochs for t in suite.tasks) * suite.n_trials
        # nothing was left in the embedded broker for a worker to find later
        queue = data_dir / "broker" / "queue"
        assert not queue.exists() or not any(queue.iterdir())
        # shared: another tenant's recommendations learn from them
        other = tenant_id("someone-else")
        with session_scope() as session:
            fingerprint = jobs[0].fingerprint
            assert recommend(session, other, fingerprint, budget=2)

    def test_running_the_suite_again_creates_nothing(self, sqlite_env: dict[str, str]) -> None:
        suite = one_task_suite()
        (first,) = run_inline(suite, tenant="seeds", share=False)
        before = counts()
        (again,) = run_inline(suite, tenant="seeds", share=False)
        assert again.job_id == first.job_id and again.created is False
        assert counts() == before


class TestTransfer:
    def test_export_import_round_trip_is_equal_and_idempotent(
        self, sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        run_inline(one_task_suite(), tenant="seeds", share=True)
        exported = export_all()
        path = tmp_path / "history.json.gz"
        transfer.write_file(exported, path)

        use_fresh_database(monkeypatch, tmp_path / "second")
        target = tenant_id("imported")
        with session_scope() as session:
            result = transfer.import_history(session, transfer.read_file(path), tenant_id=target)
        assert result.created == [j.id for j in exported.jobs] and result.skipped == []
        assert transfer.as_dict(export_all()) == transfer.as_dict(exported)
        before = counts()
        with session_scope() as session:
            again = transfer.import_history(session, transfer.read_file(path), tenant_id=target)
        assert again.created == [] and again.skipped == [j.id for j in exported.jobs]
        assert counts() == before

    def test_importing_into_a_second_tenant_derives_ids_once(
        self, sqlite_env: dict[str, str], tmp_path: Path
    ) -> None:
        run_inline(one_task_suite(), tenant="seeds", share=False)
        history = export_all()
        other = tenant_id("other")
        for _ in range(2):
            with session_scope() as session:
                result = transfer.import_history(session, history, tenant_id=other, shared=True)
        assert result.created == []
        with session_scope() as session:
            jobs = list(session.scalars(select(Job).where(Job.tenant_id == other)))
        assert len(jobs) == 1 and jobs[0].id != history.jobs[0].id and jobs[0].shared
        assert jobs[0].fingerprint == history.jobs[0].fingerprint

    def test_import_computes_a_missing_fingerprint(self, sqlite_env: dict[str, str]) -> None:
        run_inline(one_task_suite(), tenant="seeds", share=False)
        history = export_all()
        data = history.model_dump(mode="json")
        data["jobs"][0]["fingerprint"] = None
        with session_scope() as session:
            session.execute(Job.__table__.delete())
        with session_scope() as session:
            transfer.import_history(
                session, transfer.HistoryFile.model_validate(data), tenant_id=tenant_id("x")
            )
        with session_scope() as session:
            (job,) = session.scalars(select(Job))
            assert job.fingerprint == history.jobs[0].fingerprint


def _valid_file() -> dict[str, Any]:
    body = get_suite("tiny").job_body(get_suite("tiny").tasks[0])
    job = JobCreate.model_validate(body)
    return {
        "format": "optserve.history",
        "version": 1,
        "exported_at": "2026-01-01T00:00:00Z",
        "jobs": [
            {
                "id": str(uuid.uuid4()),
                "name": "x",
                "status": "completed",
                "spec": job.model_dump(mode="json"),
                "resolved_space": job.resolved_space().model_dump(mode="json"),
                "created_at": "2026-01-01T00:00:00Z",
                "trials": [
                    {
                        "number": 0,
                        "slot": 0,
                        "attempt": 1,
                        "state": "complete",
                        "optimizer": "sgd",
                        "params": {"optimizer": "sgd", "sgd.lr": 0.1},
                        "value": 0.5,
                        "curve": [{"epoch": 1, "step": 8, "examples": 120, "wall_time": 0.1}],
                    }
                ],
            }
        ],
    }


class TestMalformedFiles:
    def test_the_valid_example_parses(self) -> None:
        history = transfer.parse(json.dumps(_valid_file()).encode())
        assert len(history.jobs) == 1

    @pytest.mark.parametrize(
        ("change", "where"),
        [
            (lambda f: f.update(format="something-else"), "format"),
            (lambda f: f.update(version=2), "version"),
            (lambda f: f["jobs"][0].update(unexpected=1), "jobs.0.unexpected"),
            (lambda f: f["jobs"][0]["spec"].update(n_trials=0), "jobs.0.spec"),
            (lambda f: f["jobs"][0].update(status="running"), "jobs.0.status"),
            (lambda f: f["jobs"][0]["trials"][0].update(value="0.5"), "jobs.0.trials.0.value"),
            (lambda f: f["jobs"][0]["trials"][0].update(slot=99), "jobs.0"),
            (lambda f: f["jobs"].append(dict(f["jobs"][0])), "jobs"),
        ],
    )
    def test_refused_with_the_place_named(self, change: Any, where: str) -> None:
        data = _valid_file()
        change(data)
        with pytest.raises(transfer.HistoryFileError, match=rf"\n  {where}[.:]"):
            transfer.parse(json.dumps(data).encode())

    def test_nan_is_not_json(self) -> None:
        raw = json.dumps(_valid_file()).replace('"value": 0.5', '"value": NaN').encode()
        with pytest.raises(transfer.HistoryFileError, match=r"not a valid optserve\.history"):
            transfer.parse(raw)

    def test_not_json_and_not_gzip(self) -> None:
        with pytest.raises(transfer.HistoryFileError, match="not a valid"):
            transfer.parse(b"\x80\x04 pickled?")
        with pytest.raises(transfer.HistoryFileError, match="not a valid gzip"):
            transfer.parse(b"\x1f\x8bnot really gzip")

    def test_decompression_is_bounded(self) -> None:
        raw = gzip.compress(b" " * 10_000)
        with pytest.raises(transfer.HistoryFileError, match="more than 1000 bytes"):
            transfer.parse(raw, max_bytes=1000)


class TestCli:
    def test_export_then_import_through_the_cli(
        self, sqlite_env: dict[str, str], tmp_path: Path
    ) -> None:
        from service.cli import app

        run_inline(one_task_suite(), tenant="seeds", share=False)
        path = tmp_path / "h.json"
        runner = CliRunner()
        out = runner.invoke(app, ["history", "export", str(path), "--tenant", "seeds"])
        assert out.exit_code == 0, out.output
        assert "wrote 1 jobs, 2 trials" in out.output
        out = runner.invoke(app, ["history", "import", str(path), "--tenant", "b", "--shared"])
        assert out.exit_code == 0, out.output
        assert "imported 1 jobs into tenant 'b' (0 already present)" in out.output
        out = runner.invoke(app, ["history", "import", str(path), "--tenant", "b"])
        assert "imported 0 jobs into tenant 'b' (1 already present)" in out.output

    def test_import_of_a_bad_file_exits_1_and_says_why(
        self, sqlite_env: dict[str, str], tmp_path: Path
    ) -> None:
        from service.cli import app

        path = tmp_path / "bad.json"
        path.write_text('{"format": "optserve.history", "version": 1}')
        out = CliRunner().invoke(app, ["history", "import", str(path)])
        assert out.exit_code == 1
        assert "exported_at: Field required" in out.output
        assert counts()["jobs"] == 0

    def test_export_needs_a_tenant_or_all(self, sqlite_env: dict[str, str], tmp_path: Path) -> None:
        from service.cli import app

        out = CliRunner().invoke(app, ["history", "export", str(tmp_path / "x.json")])
        assert out.exit_code == 2 and "--tenant" in out.output


class TestShipped:
    def test_shipped_history_imports_with_fingerprints_and_feeds_recommendations(
        self, sqlite_env: dict[str, str]
    ) -> None:
        from service.cli import app
        from service.history.cli import SHIPPED
        from service.recommend.engine import recommend

        assert SHIPPED.stat().st_size < 1_000_000
        history = transfer.read_file(SHIPPED)
        assert {j.name for j in history.jobs} == {t.job_name for t in get_suite("small").tasks}
        out = CliRunner().invoke(app, ["history", "import", "--shipped", "--tenant", "seeds"])
        assert out.exit_code == 0, out.output
        newcomer = tenant_id("newcomer")
        with session_scope() as session:
            jobs = list(session.scalars(select(Job)))
            assert len(jobs) == len(history.jobs)
            assert all(j.fingerprint is not None and j.shared for j in jobs)
            mlp_iris = next(j for j in jobs if j.name == "seed/mlp-iris")
            recs = recommend(session, newcomer, mlp_iris.fingerprint, exclude_job_ids=[mlp_iris.id])
        assert recs and recs[0].params["optimizer"] in SEED_OPTIMIZERS
