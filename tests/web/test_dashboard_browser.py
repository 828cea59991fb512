"""The dashboard in a real headless Chromium against a real embedded stack.

Log in with a key created by the CLI, watch a running job (the progress bar moves, one
learning curve per trial appears, live from the event stream), open a finished compare
job's comparison, and open Optuna's own dashboard mounted for the job. Screenshots go
to ``$OPTSERVE_ARTIFACTS/web`` (default ``.artifacts/web``); the finished job page is also
saved as ``docs/dashboard.png`` for the README (when missing, or with
``OPTSERVE_UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.web.routes import STATIC_DIR as STATIC
from service.web.routes import plotly_js
from tests.conftest import IN_CI
from tests.e2e.harness import Stack, wait_for
from tests.factories import example_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
N_TRIALS = 3
EPOCHS = 5
# long enough to be watched (a few seconds an epoch on a busy 2-core CI machine)
WATCHED_TASK = {
    "model": {"name": "mlp", "params": {"width": 64}},
    "dataset": {"name": "digits"},
    "epochs": EPOCHS,
    "batch_size": 32,
    "metric": "val_accuracy",
    "direction": "maximize",
}
COMPARE_TASK = {
    "model": {"name": "mlp", "params": {"width": 16}},
    "dataset": {"name": "digits"},
    "epochs": 2,
    "metric": "val_accuracy",
    "direction": "maximize",
}
TRIAL_TRACES = "document.getElementById('plot-curves').data"
TRIAL_TRACES_COUNT = f"({TRIAL_TRACES} || []).filter(t => t.meta && t.meta.kind === 'trial').length"


def artifacts_dir() -> Path:
    path = Path(os.environ.get("OPTSERVE_ARTIFACTS", REPO / ".artifacts")) / "web"
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path, {"OPTSERVE_DATA_DIR": str(tmp_path / "data")})
    running.start("up", "up")
    try:
        running.wait_healthy(timeout=90)
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def submit(url: str, key: str, body: dict[str, Any]) -> str:
    response = httpx.post(
        f"{url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def job_status(url: str, key: str, job_id: str) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    return str(httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=30).json()["status"])


def test_watch_a_job_and_compare_optimizers_in_the_browser(stack: Stack, browser: Any) -> None:
    out = artifacts_dir()
    key = stack.run("keys", "create", "--tenant", "browser").strip()
    # the compare job first (the embedded worker runs one trial at a time)
    compare_id = submit(
        stack.url,
        key,
        example_job(
            name="compare",
            task=COMPARE_TASK,
            mode="compare",
            n_trials=4,
            max_parallel=1,
            search_space={"optimizers": {"adamw": {}, "sgd": {}}},
            sampler={"name": "random", "seed": 0},
        ),
    )
    watched_id = submit(
        stack.url,
        key,
        example_job(name="watched", task=WATCHED_TASK, n_trials=N_TRIALS, max_parallel=1),
    )
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        _log_in(page, stack.url, key, out)
        _watch_running_job(page, stack, key, watched_id, out)
        _open_comparison(page, stack, key, compare_id, out)
        _recommend(page, out)
        _open_optuna_dashboard(page, stack.url, watched_id, out)
    except Exception:
        page.screenshot(path=str(out / "failure.png"), full_page=True)
        print(stack.logs())
        raise
    finally:
        page.close()


def _log_in(page: Any, url: str, key: str, out: Path) -> None:
    page.goto(url)
    page.fill("#api-key", "osk_not_a_key_00000000")
    page.click("#login-form button[type=submit]")
    page.wait_for_function("document.getElementById('login-error').textContent.length > 0")
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#jobs-table tbody tr", timeout=30_000)
    assert page.evaluate("localStorage.getItem('optserve.apiKey')") == key
    assert page.locator("#jobs-table tbody tr").count() == 2
    page.screenshot(path=str(out / "jobs.png"), full_page=True)


def _progress(page: Any) -> float:
    return float(page.evaluate("document.getElementById('job-progress').value"))


def _watch_running_job(page: Any, stack: Stack, key: str, job_id: str, out: Path) -> None:
    page.click(f"#jobs-table tr[data-job='{job_id}'] a")
    page.wait_for_selector("#job-view:not([hidden])")
    wait_for(lambda: job_status(stack.url, key, job_id) == "running", 180, "job running", stack)
    page.wait_for_function("document.getElementById('job-progress').value > 0", timeout=120_000)
    first = _progress(page)
    page.wait_for_function(
        f"document.getElementById('job-progress').value > {first}", timeout=120_000
    )
    second = _progress(page)
    assert 0 < first < second <= 1, (first, second)
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'running' && "
        "document.getElementById('job-eta').textContent.includes('ETA')",
        timeout=30_000,
    )
    page.wait_for_function(f"{TRIAL_TRACES_COUNT} >= 1", timeout=60_000)
    page.screenshot(path=str(out / "job-running.png"), full_page=True)
    wait_for(lambda: job_status(stack.url, key, job_id) == "completed", 300, "job finished", stack)
    # the page was not reloaded: the event stream brought every trial's curve
    page.wait_for_function(f"{TRIAL_TRACES_COUNT} === {N_TRIALS}", timeout=60_000)
    assert page.inner_text("#job-error") == "", "the page fell back to polling"
    page.wait_for_function("document.getElementById('job-progress').value === 1")
    curves = page.evaluate(TRIAL_TRACES)
    per_trial = [t for t in curves if t.get("meta", {}).get("kind") == "trial"]
    assert sorted(t["meta"]["trial"] for t in per_trial) == list(range(N_TRIALS))
    assert all(len(t["x"]) == EPOCHS for t in per_trial), [len(t["x"]) for t in per_trial]
    medians = [t for t in curves if t.get("meta", {}).get("kind") == "median"]
    assert len(medians) == len({t["legendgroup"] for t in per_trial})
    assert page.locator("#job-summary tbody tr").count() == len(medians)
    assert "no completed trial" not in page.inner_text("#job-best")
    page.wait_for_timeout(1000)  # let Plotly settle before the README picture
    page.screenshot(path=str(out / "job-finished.png"), full_page=True)
    _update_readme_picture(out / "job-finished.png")


def _update_readme_picture(shot: Path) -> None:
    """docs/dashboard.png is written when missing or when OPTSERVE_UPDATE_SCREENSHOTS=1,
    so that a test run does not leave a tracked file changed."""
    picture = REPO / "docs" / "dashboard.png"
    if picture.exists() and os.environ.get("OPTSERVE_UPDATE_SCREENSHOTS") != "1":
        return
    picture.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, picture)


def _open_comparison(page: Any, stack: Stack, key: str, job_id: str, out: Path) -> None:
    wait_for(
        lambda: job_status(stack.url, key, job_id) == "completed", 180, "compare finished", stack
    )
    page.goto(f"{stack.url}/#/jobs/{job_id}")
    page.wait_for_selector("#compare-section:not([hidden])")
    page.wait_for_function(
        "(document.getElementById('plot-comparison').data || []).length === 2", timeout=30_000
    )
    rows = page.locator("#comparison-table tbody tr")
    assert rows.count() == 2
    assert sorted(rows.nth(i).locator("td").first.inner_text() for i in range(2)) == [
        "adamw",
        "sgd",
    ]
    page.screenshot(path=str(out / "comparison.png"), full_page=True)


def _recommend(page: Any, out: Path) -> None:
    """The panel lists what the two finished jobs teach, and shows a 4xx as its message."""
    page.click("nav a[href='#/recommend']")
    page.fill("#recommend-task", '{"model": {"name": "mlp"}, "dataset": {"name": "digits"}}')
    page.click("#recommend-form button[type=submit]")
    page.wait_for_selector("#recommend-list li", timeout=30_000)
    first = page.locator("#recommend-list li").first.inner_text()
    assert first.split(" ")[0] in ("adamw", "sgd"), first
    page.screenshot(path=str(out / "recommend.png"), full_page=True)
    page.fill("#recommend-task", '{"model": {"name": "no-such-model"}, "dataset": {"name": "x"}}')
    page.click("#recommend-form button[type=submit]")
    page.wait_for_function("document.getElementById('recommend-error').textContent.length > 0")
    assert page.inner_text("#recommend-error").startswith("4"), page.inner_text("#recommend-error")
    assert page.locator("#recommend-list li").count() == 0


def _open_optuna_dashboard(page: Any, url: str, job_id: str, out: Path) -> None:
    """Optuna's dashboard under /optuna/<job>/, authenticated by the login cookie."""
    page.goto(f"{url}/optuna/{job_id}/dashboard")
    page.wait_for_selector(f"text=job-{job_id}", timeout=60_000)
    page.screenshot(path=str(out / "optuna-dashboard.png"), full_page=True)


ORIGIN = "http://optserve.test"


@pytest.fixture
def offline_page(browser: Any) -> Iterator[Any]:
    """The dashboard's files served from disk to a page, with no stack behind them."""
    files = {"/": STATIC / "index.html", "/static/plotly.min.js": plotly_js()}

    def serve(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        file = files.get(path) or STATIC / path.removeprefix("/static/")
        kind = "text/html" if file.suffix == ".html" else "application/javascript"
        route.fulfill(status=200, body=file.read_bytes(), content_type=kind)

    page = browser.new_page()
    page.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/")
    try:
        yield page
    finally:
        page.close()


def test_curves_plot_of_a_2000_trial_job_stays_responsive(offline_page: Any) -> None:
    """The page's own charts module on 2,000 trials of 50 epochs: drawn in seconds, as one
    WebGL trace per optimizer plus the medians."""
    offline_page.wait_for_function("window.Plotly !== undefined")
    took_ms, traces = offline_page.evaluate(
        """async () => {
          const charts = await import('/static/charts.js');
          const optimizers = ['adamw', 'ademamix', 'sgd', 'lamb'];
          const curves = Array.from({length: 2000}, (_, n) => ({
            number: n, optimizer: optimizers[n % 4],
            points: Array.from({length: 50}, (_, e) => ({epoch: e + 1, y: 1 / (e + n % 7 + 1)})),
          }));
          document.getElementById('job-view').hidden = false;
          const start = performance.now();
          charts.drawCurves('plot-curves', curves, 'val_loss', charts.colorOf(optimizers));
          const took = performance.now() - start;
          return [took, document.getElementById('plot-curves').data.map(t => t.meta)];
        }"""
    )
    assert [t["kind"] for t in traces] == ["trials"] * 4 + ["median"] * 4
    assert sum(t["n"] for t in traces if t["kind"] == "trials") == 2000
    print(f"2,000 curves drawn in {took_ms:.0f} ms")
    assert took_ms < 15_000, took_ms


def test_event_stream_is_parsed_and_resumed_with_last_event_id(offline_page: Any) -> None:
    """A stream that drops before ``job.finished`` is reopened with ``Last-Event-ID``;
    comments, CRLF line ends and multi-line data follow the SSE rules."""
    seen: list[str | None] = []
    first = (
        ": keep-alive\r\n\r\n"
        'id: 1\r\nevent: trial.started\r\ndata: {"trial": 0,\r\ndata:  "optimizer": "sgd"}\r\n\r\n'
        'id: 2\nevent: trial.epoch\ndata: {"trial": 0, "epoch": 1, "value": 0.5}\n\n'
    )
    second = 'id: 3\nevent: job.finished\ndata: {"status": "completed"}\n\n'

    def events(route: Any) -> None:
        seen.append(route.request.headers.get("last-event-id"))
        body = first if len(seen) == 1 else second
        route.fulfill(status=200, body=body, content_type="text/event-stream")

    offline_page.route(f"{ORIGIN}/v1/jobs/j/events", events)
    got = offline_page.evaluate(
        """async () => {
          const { followEvents } = await import('/static/api.js');
          const got = [];
          const signal = new AbortController().signal;
          await followEvents('j', (type, data) => got.push([type, data]), { signal, retryMs: 10 });
          return got;
        }"""
    )
    assert seen == [None, "2"]
    assert got == [
        ["trial.started", {"trial": 0, "optimizer": "sgd"}],
        ["trial.epoch", {"trial": 0, "epoch": 1, "value": 0.5}],
        ["job.finished", {"status": "completed"}],
    ]
