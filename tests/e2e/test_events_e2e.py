"""The event stream on real processes (``optserve up``: API, worker, reconciler, SQLite).

One client follows a running job from submission to ``job.finished``; another drops
its connection mid-way and comes back with ``Last-Event-ID``. Both must see exactly
the stored backlog: no gap, no duplicate, every trial's events in order, matching
``/trials`` and the job.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth.keys import generate_key
from tests.e2e.harness import Stack
from tests.factories import example_job
from tests.service.test_events import Frame, events_of, frames

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TERMINAL_TRIAL = {"complete", "pruned", "fail", "cancelled"}


def follow(
    http: httpx.Client, job_id: str, *, last_event_id: int | None = None, stop_after: str = ""
) -> list[Frame]:
    """Stream the job's events until the server closes, or until an event ``stop_after``."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    got: list[Frame] = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for frame in frames(response.iter_lines()):
            if frame.comment is not None:
                continue
            got.append(frame)
            if frame.event == stop_after:
                break  # leaving the block drops the connection mid-stream
    return got


def check_order(events: list[Frame], trials: list[dict[str, Any]], job: dict[str, Any]) -> None:
    """Per trial: started, then epochs 1, 2, ..., then one finished that matches ``/trials``."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "job.started"
    assert events[-1].event == "job.finished"
    assert [e.event for e in events].count("job.finished") == 1
    finished = events[-1].data
    assert finished is not None and finished["status"] == job["status"]
    assert finished["best_value"] == pytest.approx(job["best"]["value"])
    by_trial: dict[int, list[Frame]] = {}
    for e in events:
        if e.event is not None and e.event.startswith("trial."):
            assert e.data is not None
            by_trial.setdefault(e.data["trial"], []).append(e)
    assert sorted(by_trial) == sorted(t["number"] for t in trials)
    for t in trials:
        kinds = [e.event for e in by_trial[t["number"]]]
        assert kinds[0] == "trial.started" and kinds[-1] == "trial.finished", kinds
        assert kinds.count("trial.finished") == 1 and kinds.count("trial.started") == 1, kinds
        epochs = [e.data["epoch"] for e in by_trial[t["number"]] if e.data and "epoch" in e.data]
        assert epochs == list(range(1, len(epochs) + 1)), epochs
        end = by_trial[t["number"]][-1].data
        assert end is not None
        assert (end["state"], end["value"]) == (t["state"], t["value"])
        assert end["state"] in TERMINAL_TRIAL


def test_followers_get_every_event_in_order_and_resume_without_gaps(tmp_path: Path) -> None:
    key = generate_key()
    env = {
        "OPTSERVE_DATA_DIR": str(tmp_path / "data"),
        "OPTSERVE_BOOTSTRAP_KEY": key,
        "OPTSERVE_EVENTS_HEARTBEAT_S": "1",
        "OPTSERVE_EVENTS_POLL_S": "0.2",
    }
    stack = Stack(tmp_path, env)
    stack.start("up", "up")
    try:
        stack.wait_healthy(timeout=90)
        http = httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        body = example_job(n_trials=3, max_parallel=1)
        body["task"] = {**body["task"], "model": {"name": "mlp", "params": {"width": 16}}}  # type: ignore[dict-item]
        response = http.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        whole: list[Frame] = []
        errors: list[BaseException] = []

        def follow_to_the_end() -> None:
            try:
                whole.extend(follow(http, job_id))
            except BaseException as exc:
                errors.append(exc)

        follower = threading.Thread(target=follow_to_the_end)
        follower.start()
        before = follow(http, job_id, stop_after="trial.epoch")  # then the line drops
        time.sleep(1.0)  # events go on while this client is away
        after = follow(http, job_id, last_event_id=before[-1].id)
        follower.join(timeout=240)
        assert not follower.is_alive() and not errors, errors

        job = http.get(f"/v1/jobs/{job_id}").json()
        trials = http.get(f"/v1/jobs/{job_id}/trials", params={"limit": 500}).json()["items"]
        stored = http.get(f"/v1/jobs/{job_id}/events", params={"follow": "false"})
        backlog = events_of(stored.text)
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()

    assert job["status"] == "completed", job
    check_order(backlog, trials, job)
    assert [(e.id, e.event, e.data) for e in whole] == [(e.id, e.event, e.data) for e in backlog]
    # the reconnecting client: left mid-job, came back, and the union is the backlog
    assert "job.finished" not in [e.event for e in before]
    assert "trial.finished" in [e.event for e in after]
    union = [(e.id, e.data) for e in before + after]
    assert union == [(e.id, e.data) for e in backlog]
