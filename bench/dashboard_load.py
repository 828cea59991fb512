"""What the dashboard's job page costs on a 2,000-trial job, request by request.

Builds a fresh database (a temporary SQLite file by default, or the empty PostgreSQL
database given with ``--postgres``) holding one job of ``--trials`` finished trial
runs with ``--points`` curve points each and its event stream (started, one event per
epoch, finished: what workers write), plus ``--jobs`` small jobs for the jobs list.
The job is submitted through the API and its rows are bulk-inserted in the shape the
workers write. Then the real app is served by uvicorn on a local port and each
request the dashboard makes is timed over HTTP: one warm-up, then the median of
``--repeats``.

The job page's "page load" is the sum of the requests it makes: the job, every page
of trials and of curves (``--page`` per page, 500 is the API's maximum), parameter
importance and the event backlog (``follow=false``). The jobs list is the index page.

With ``--browser`` it also opens the pages in headless Chromium (Debian's, driven by
playwright) and times each from navigation until it is drawn: the jobs table filled,
and the job page's curves plot holding its traces.

Usage: python bench/dashboard_load.py [--trials 2000 --points 10 --jobs 20 --repeats 5
--page 500 --browser --postgres postgresql+psycopg://root@127.0.0.1:5432/dash_bench]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx


@dataclass(frozen=True)
class Timing:
    request: str
    median_ms: float
    cpu_ms: float
    size_kb: float
    on_job_page: bool


def configure(args: argparse.Namespace, data_dir: Path) -> None:
    """Settings come from the environment: set it before anything reads them."""
    os.environ["OPTSERVE_DATA_DIR"] = str(data_dir)
    os.environ["OPTSERVE_ENV"] = "testing"
    os.environ["OPTSERVE_MAX_TRIALS"] = str(max(args.trials, 1000))
    os.environ["OPTSERVE_LOG_LEVEL"] = "WARNING"
    if args.postgres:
        os.environ["OPTSERVE_DATABASE_URL"] = args.postgres


def job_body(n_trials: int, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "task": {
            "model": {"name": "mlp", "params": {"width": 64}},
            "dataset": {"name": "digits"},
            "epochs": 10,
            "metric": "val_accuracy",
            "direction": "maximize",
        },
        "search_space": {"optimizers": {"sgd": {}, "adamw": {}, "ademamix": {}}},
        "n_trials": n_trials,
        "max_parallel": 1,
    }


def sampled_params(resolved_space: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """What workers store: params drawn by ``workers.objective.suggest`` (random sampler)."""
    import optuna

    from workers.objective import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        config = suggest(trial, resolved_space)
        out.append((dict(trial.params), config.hyperparameters))
        study.tell(trial, 0.0)
    return out  # type: ignore[return-value]


def fill_job(job_id: uuid.UUID, n_trials: int, n_points: int, events: bool) -> None:
    """Finished runs, their curves and events, bulk-inserted in the workers' shape."""
    import datetime as dt

    from sqlalchemy import insert, update

    from service.db import session_scope
    from service.models import CurvePoint, Job, JobEvent, TrialRun, TrialSlot

    rng = random.Random(0)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        params = sampled_params(job.resolved_space, n_trials)
    runs, points, stream = [], [], []
    for number, (p, hp) in enumerate(params):
        run_id = uuid.uuid4()
        state = "complete" if number % 5 else "pruned"
        final = rng.random()
        runs.append(
            {
                "id": run_id,
                "job_id": job_id,
                "slot": number,
                "attempt": 1,
                "number": number,
                "state": state,
                "optimizer": p["optimizer"],
                "params": p,
                "hyperparameters": hp,
                "value": final if state == "complete" else None,
                "diverged": False,
                "seed": 0,
                "versions": {},
                "started_at": t0 + dt.timedelta(minutes=number),
                "finished_at": t0 + dt.timedelta(minutes=number, seconds=40),
            }
        )
        stream.append(("trial.started", number, {"trial": number, "optimizer": p["optimizer"]}))
        for epoch in range(1, n_points + 1):
            metric = final * epoch / n_points
            point = {"epoch": epoch, "step": epoch * 28, "wall_time": 4.0 * epoch}
            losses = {"train_loss": 1 / epoch, "val_loss": 1.2 / epoch}
            points.append(
                {
                    "trial_id": run_id,
                    **point,
                    "examples": epoch * 1797,
                    **losses,
                    "val_metric": metric,
                    "lr": 1e-3,
                    "metrics": {"val_accuracy": metric, "val_loss": 1.2 / epoch},
                }
            )
            payload = {"trial": number, **point, **losses, "value": metric, "lr": 1e-3}
            stream.append(("trial.epoch", number, payload))
        payload = {"trial": number, "state": state, "value": runs[-1]["value"]}
        stream.append(("trial.finished", number, payload))
    with session_scope() as session:
        session.execute(insert(TrialRun), runs)
        session.execute(insert(CurvePoint), points)
        if events:
            session.execute(
                insert(JobEvent),
                [
                    {
                        "job_id": job_id,
                        "seq": seq,
                        "type": kind,
                        "trial_number": number,
                        "payload": payload,
                        "created_at": t0,
                    }
                    for seq, (kind, number, payload) in enumerate(stream, start=1)
                ],
            )
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="running", event_seq=len(stream) if events else 0)
        )
        session.execute(update(TrialSlot).where(TrialSlot.job_id == job_id).values(status="done"))


def build(args: argparse.Namespace) -> tuple[str, str]:
    """Migrate, make a key, submit the jobs through the app, fill them. Returns (key, job)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.db import session_scope
    from service.migrate import upgrade
    from service.tenants.service import add_key, get_or_create_tenant

    upgrade()
    with session_scope() as session:
        key = add_key(session, get_or_create_tenant(session, "bench"))
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app()) as client:

        def submit(n: int, name: str) -> uuid.UUID:
            response = client.post("/v1/jobs", json=job_body(n, name), headers=auth)
            assert response.status_code == 202, response.text
            return uuid.UUID(response.json()["id"])

        big = submit(args.trials, "big")
        small = [submit(10, f"small-{i}") for i in range(args.jobs)]
    started = time.perf_counter()
    fill_job(big, args.trials, args.points, events=not args.no_events)
    for job_id in small:
        fill_job(job_id, 10, args.points, events=False)
    print(f"built in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return key, str(big)


def serve() -> tuple[str, Callable[[], None]]:
    """The real app under uvicorn on a free local port, in a thread."""
    import socket

    import uvicorn

    from service.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return url, stop


def requests_of(job_id: str, n_trials: int, page: int) -> list[tuple[str, str, bool]]:
    """(label, path, on the job page) for each request the dashboard makes."""
    out = [("jobs list", "/v1/jobs?limit=50", False), ("job", f"/v1/jobs/{job_id}", True)]
    for offset in range(0, n_trials, page):
        out.append(
            (
                f"trials {offset}-{offset + page - 1}",
                f"/v1/jobs/{job_id}/trials?limit={page}&offset={offset}",
                True,
            )
        )
    for offset in range(0, n_trials, page):
        out.append(
            (
                f"curves {offset}-{offset + page - 1}",
                f"/v1/jobs/{job_id}/curves?limit={page}&offset={offset}",
                True,
            )
        )
    out.append(("importance (ped_anova)", f"/v1/jobs/{job_id}/importance", True))
    out.append(("events backlog", f"/v1/jobs/{job_id}/events?follow=false", True))
    return out


def measure(url: str, key: str, job_id: str, args: argparse.Namespace) -> list[Timing]:
    headers = {"Authorization": f"Bearer {key}"}
    timings = []
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for label, path, on_page in requests_of(job_id, args.trials, args.page):
            samples, cpu, size = [], [], 0
            for i in range(args.repeats + 1):
                started, cpu_started = time.perf_counter(), time.process_time()
                response = client.get(path)
                elapsed = time.perf_counter() - started
                cpu_elapsed = time.process_time() - cpu_started
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
                size = len(response.content)
                if i:  # the first one warms caches and pools
                    samples.append(elapsed * 1000)
                    cpu.append(cpu_elapsed * 1000)
            median = statistics.median
            timings.append(Timing(label, median(samples), median(cpu), size / 1024, on_page))
    return timings


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def measure_browser(
    url: str, key: str, job_id: str, n_points: int, repeats: int
) -> dict[str, float]:
    """Milliseconds from navigation until each page is drawn, median of ``repeats``: the
    job page once its curves plot holds every one of the job's ``n_points`` points."""
    from playwright.sync_api import sync_playwright

    drawn_jobs = "document.querySelectorAll('#jobs-table tbody tr').length > 0"
    drawn_job = (
        "(() => { const el = document.getElementById('plot-curves');"
        " if (!el || !el.data) return false;"
        " const n = el.data.reduce((s, t) => s + (t.y || []).filter((v) => v !== null).length, 0);"
        f" return n >= {n_points}; }})()"
    )
    pages = {
        "jobs page (browser)": ("#/", drawn_jobs),
        "job page (browser)": (f"#/jobs/{job_id}", drawn_job),
    }
    out: dict[str, list[float]] = {label: [] for label in pages}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for i in range(repeats + 1):
                for label, (route, drawn) in pages.items():
                    # logged in as the dashboard keeps it, before any of its scripts run
                    context = browser.new_context()
                    context.add_init_script(f"localStorage.setItem('optserve.apiKey', {key!r})")
                    page = context.new_page()
                    started = time.perf_counter()
                    page.goto(f"{url}/{route}")
                    page.wait_for_function(drawn, timeout=120_000)
                    if i:  # the first round warms the server and the browser's cache
                        out[label].append((time.perf_counter() - started) * 1000)
                    context.close()
        finally:
            browser.close()
    return {label: statistics.median(ms) for label, ms in out.items()}


def report(timings: list[Timing], args: argparse.Namespace, backend: str) -> None:
    print(
        f"\ndashboard load: {args.trials} trials x {args.points} points, {args.jobs} more jobs, "
        f"{backend}, page size {args.page}, median of {args.repeats}"
    )
    print(f"{'request':<28}{'median ms':>11}{'cpu ms':>9}{'size KiB':>11}")
    for t in timings:
        print(f"{t.request:<28}{t.median_ms:>11.1f}{t.cpu_ms:>9.1f}{t.size_kb:>11.1f}")
    page = [t for t in timings if t.on_job_page]
    total = (sum(t.median_ms for t in page), sum(t.cpu_ms for t in page))
    total_kb = sum(t.size_kb for t in page)
    print(f"{'job page load (sum)':<28}{total[0]:>11.1f}{total[1]:>9.1f}{total_kb:>11.1f}")
    load = os.getloadavg()[0]
    print(f"(1-minute load average {load:.1f} on {os.cpu_count()} CPUs; cpu ms = this process's")
    print(" CPU time per request, server and client threads together: less sensitive to load)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=20, help="small jobs besides the big one")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--no-events", action="store_true")
    parser.add_argument("--postgres", help="URL of an EMPTY PostgreSQL database to fill")
    parser.add_argument("--browser", action="store_true", help="also time the pages in Chromium")
    args = parser.parse_args()
    browser: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        configure(args, Path(tmp))
        key, job_id = build(args)
        url, stop = serve()
        try:
            timings = measure(url, key, job_id, args)
            if args.browser:
                n_points = args.trials * args.points
                browser = measure_browser(url, key, job_id, n_points, args.repeats)
        finally:
            stop()
    report(timings, args, "PostgreSQL" if args.postgres else "SQLite")
    for label, ms in browser.items():
        print(f"{label:<28}{ms:>11.1f}  (navigation until drawn, median of {args.repeats})")


if __name__ == "__main__":
    main()
