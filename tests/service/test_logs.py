"""Structured logs: the formatter, the bound context, the API's request lines, and a
real Celery worker whose every trial line is JSON carrying the job and the trial."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import logs
from tests.e2e.harness import Stack, wait_for
from tests.factories import example_job, make_key
from workers.optuna_storage import init_storage


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Our JSON handler on the root logger, writing into a buffer."""
    stream = io.StringIO()
    handler = logs.make_handler("test", "json", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestFormatAndContext:
    def test_bound_fields_nest_and_unwind(self, captured: io.StringIO) -> None:
        log = logging.getLogger("optserve.test")
        job_id = uuid.uuid4()
        with logs.bind(job_id=job_id, slot=2):
            log.info("outer")
            with logs.bind(trial=7):
                log.info("inner %s", "arg", extra={"slot": 99})
            logs.annotate(attempt=3)
            log.warning("annotated")
        log.info("after")
        outer, inner, annotated, after = lines(captured)
        assert outer["msg"] == "outer" and outer["job_id"] == str(job_id) and outer["slot"] == 2
        assert "trial" not in outer
        assert (inner["msg"], inner["trial"], inner["slot"]) == ("inner arg", 7, 99)
        assert (annotated["level"], annotated["attempt"]) == ("WARNING", 3)
        assert "trial" not in annotated
        assert "job_id" not in after and "attempt" not in after
        assert outer["logger"] == "optserve.test" and outer["process"] == "test"
        assert outer["ts"].endswith("Z")

    def test_threads_do_not_share_fields(self, captured: io.StringIO) -> None:
        log = logging.getLogger("optserve.test")

        def work(n: int) -> None:
            with logs.bind(job_id=f"job-{n}"):
                time.sleep(0.01)
                log.info("work", extra={"n": n})

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(line["job_id"] == f"job-{line['n']}" for line in lines(captured))

    def test_exceptions_and_non_finite_values_stay_valid_json(self, captured: io.StringIO) -> None:
        log = logging.getLogger("optserve.test")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra={"value": float("nan"), "best": [float("inf")]})
        (line,) = lines(captured)  # json.loads would accept NaN: check the raw text
        assert "NaN" not in captured.getvalue() and "Infinity" not in captured.getvalue()
        assert line["value"] == "nan" and line["best"] == ["inf"]
        assert "ValueError: boom" in line["exc"]

    def test_text_format_carries_the_same_fields(self) -> None:
        stream = io.StringIO()
        handler = logs.make_handler("worker", "text", stream)
        record = logging.LogRecord("w", logging.INFO, __file__, 1, "hello %s", ("you",), None)
        with logs.bind(job_id="j1", trial=4):
            handler.handle(record)
        text = stream.getvalue().strip()
        assert text.endswith("INFO worker w: hello you job_id=j1 trial=4")

    def test_format_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from service.config import Settings

        monkeypatch.delenv("OPTSERVE_LOG_FORMAT", raising=False)
        assert Settings(ENV="development").log_format == "text"
        assert Settings(ENV="production", SECRET_KEY="s" * 32).log_format == "json"
        assert Settings(ENV="production", SECRET_KEY="s" * 32, LOG_FORMAT="text").log_format == (
            "text"
        )


class TestApiRequests:
    def test_job_requests_log_the_job_and_request_id(
        self, client: TestClient, auth: dict[str, str], captured: io.StringIO
    ) -> None:
        response = client.post("/v1/jobs", json=example_job(), headers=auth)
        job_id = response.json()["id"]
        response = client.get(
            f"/v1/jobs/{job_id}/trials/3/curve", headers={**auth, "X-Request-ID": "req-42"}
        )
        assert response.status_code == 404
        assert response.headers["X-Request-ID"] == "req-42"
        requests = [line for line in lines(captured) if line["logger"] == "optserve.access"]
        submit, curve = requests[-2:]
        assert submit["method"] == "POST" and submit["status"] == 202 and "job_id" not in submit
        assert (curve["job_id"], curve["trial"], curve["status"]) == (job_id, 3, 404)
        assert curve["request_id"] == "req-42" and curve["duration_ms"] >= 0
        assert "authorization" not in captured.getvalue().lower()

    def test_a_new_request_id_when_none_or_odd(self, client: TestClient) -> None:
        first = client.get("/v1/health").headers["X-Request-ID"]
        odd = client.get("/v1/health", headers={"X-Request-ID": "a b\tc"}).headers["X-Request-ID"]
        assert len(first) == 32 and len(odd) == 32 and first != odd


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_worker_logs_json_with_job_and_trial(
    sqlite_env: dict[str, str], client: TestClient, tmp_path: Path
) -> None:
    init_storage()
    auth = {"Authorization": f"Bearer {make_key('tenant-a')}"}
    body = example_job(n_trials=2, max_parallel=1)
    body["task"]["epochs"] = 2  # type: ignore[index]
    job_id = client.post("/v1/jobs", json=body, headers=auth).json()["id"]
    stack = Stack(tmp_path, {**sqlite_env, "OPTSERVE_LOG_FORMAT": "json"})
    stack.start("worker", "worker")
    try:

        def finished() -> bool:
            job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
            return bool(job["n_finished"] == 2)

        wait_for(finished, 180, "two trials", stack)
        wait_for(lambda: _ended(tmp_path) >= 2, 30, "trial ended lines", stack)
    finally:
        stack.stop()
    text = (tmp_path / "worker.log").read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # Optuna's own "[I 2026-…]" handler is off: its lines come through ours
    assert not [line for line in text.splitlines() if line.startswith("[I ")], text
    assert any(r["logger"].startswith("optuna") for r in records), text
    ended = [r for r in records if r["msg"] == "trial ended"]
    # every line the pool process logged came from inside a task and names its job and
    # slot: the trial's own lines, Optuna's, and Celery's "Task … succeeded"
    children = {r["pid"] for r in ended}
    trial_lines = [r for r in records if r["pid"] in children]
    assert any(r["msg"].startswith("Task trials.run") for r in trial_lines), text
    assert any(r["logger"].startswith("optuna") for r in trial_lines), text
    assert all(r.get("job_id") == job_id and "slot" in r for r in trial_lines), trial_lines
    assert sorted(r["trial"] for r in ended) == [0, 1], ended
    assert all(r["state"] == "complete" and r["job_id"] == job_id for r in ended)
    assert {r["slot"] for r in ended} == {0, 1}
    # inside run_trial, every line from the moment Optuna numbers the trial carries it
    for slot in (0, 1):
        mine = [r for r in trial_lines if r["slot"] == slot]
        first = next(i for i, r in enumerate(mine) if "trial" in r)
        last = next(i for i, r in enumerate(mine) if r["msg"] == "trial ended")
        assert all("trial" in r for r in mine[first : last + 1]), mine


def _ended(workdir: Path) -> int:
    return (workdir / "worker.log").read_text(errors="replace").count('"trial ended"')
