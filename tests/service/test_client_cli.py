"""The Python client and the CLI against a real API server (uvicorn in a thread, SQLite),
with trials trained in-process by the real trial runner; and the SSE parser on
hand-written streams served over a real socket.

The events and bulk-curves tests need ``GET /v1/jobs/{id}/events`` and
``GET /v1/jobs/{id}/curves`` (see the helper brief's contracts).
"""

from __future__ import annotations

import csv
import http.server
import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
import uvicorn
from typer.testing import CliRunner

from api_schemas import JobRead
from service import cli
from service.client import ApiError, Client
from service.client_events import JobFinished, TrialEpoch, TrialFinished, TrialStarted
from service.progress import JobProgress
from service.snippet import schedule_of
from service.sse import SSEMessage, SSEParser, parse
from tests.conftest import apply_env
from tests.e2e.harness import free_port
from tests.factories import dataset_file, make_key
from workers.objective import suggest

# -- the SSE parser -------------------------------------------------------------------------
STREAM = (
    ": keep-alive\n"
    "retry: 2500\n"
    "id: 1\n"
    "event: trial.epoch\n"
    'data: {"a":\n'
    "data:  1}\n"
    "\n"
    ": another comment\r\n"
    "event: ignored-no-data\r\n"
    "\r\n"
    "id: 2\r"
    "data: second\r"
    "\r"
    "data: no id of its own\n"
    "\n"
    "id: 3\n"
    "data: cut before its blank line"
)


def test_sse_parser_reads_fields_comments_multiline_data_and_every_line_ending() -> None:
    messages = list(parse([STREAM]))
    assert messages == [
        SSEMessage(data='{"a":\n 1}', event="trial.epoch", id="1", retry_ms=2500),
        SSEMessage(data="second", event="message", id="2"),
        SSEMessage(data="no id of its own", event="message", id="2"),  # the id carries over
    ]  # the unfinished event at the end is dropped, so a resume from id 2 repeats nothing


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_sse_parser_gives_the_same_messages_whatever_the_chunking(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert list(parse(chunks)) == list(parse([STREAM]))


def test_sse_parser_last_event_id_follows_dispatched_events_only() -> None:
    parser = SSEParser()
    assert list(parser.feed("id: 7\ndata: x\n\nid: 8\ndata: partial")) == [
        SSEMessage(data="x", id="7")
    ]
    assert parser.last_event_id == "7"
    assert list(parser.close()) == []
    assert parser.last_event_id == "7"


# -- reconnection, against a hand-written stream on a real socket -----------------------------
def _event(seq: int, type_: str, **payload: Any) -> str:
    data = {"seq": seq, "type": type_, "job_id": str(JOB), "at": "2026-01-01T00:00:00Z"}
    return f"id: {seq}\nevent: {type_}\ndata: {json.dumps({**data, **payload})}\n\n"


JOB = uuid.uuid4()
SCRIPT = [
    _event(1, "job.started")
    + _event(2, "trial.started", trial=0, slot=0, attempt=1, optimizer="sgd", params={})
    + 'id: 3\nevent: trial.epoch\ndata: {"seq": 3',  # the connection drops mid-event
    ": keep-alive\n\n"
    + _event(3, "trial.epoch", trial=0, epoch=1, value=0.5, metrics={"val_loss": None})
    + _event(4, "trial.finished", trial=0, state="complete", value=0.5, duration_s=1.5)
    + _event(5, "job.finished", status="completed", best_value=0.5)
    + _event(6, "never.read"),
]


@dataclass
class Scripted:
    url: str
    seen: list[str | None]


@pytest.fixture
def scripted_stream() -> Iterator[Scripted]:
    """Connection ``i`` answers ``SCRIPT[i]`` and closes; records each Last-Event-ID."""
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Last-Event-ID"))
            body = SCRIPT[min(len(seen), len(SCRIPT)) - 1].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Scripted(f"http://127.0.0.1:{server.server_address[1]}", seen)
    server.shutdown()
    server.server_close()


def test_events_reconnect_with_last_event_id_and_end_after_job_finished(
    scripted_stream: Scripted,
) -> None:
    client = Client(scripted_stream.url, "key", reconnect_delay_s=0.01)
    events = list(client.events(JOB))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert scripted_stream.seen == [None, "2"]  # resumed after the last complete event
    assert isinstance(events[1], TrialStarted) and events[1].optimizer == "sgd"
    assert isinstance(events[2], TrialEpoch) and events[2].metrics == {"val_loss": None}
    assert isinstance(events[3], TrialFinished) and events[3].duration_s == 1.5
    assert isinstance(events[4], JobFinished) and events[4].status == "completed"


def test_events_resume_from_a_given_id(scripted_stream: Scripted) -> None:
    SCRIPT_FROM = Client(scripted_stream.url, "k", reconnect_delay_s=0.01)
    first = next(iter(SCRIPT_FROM.events(JOB, last_event_id=41)))
    assert scripted_stream.seen == ["41"]
    assert first.seq == 1


def test_progress_counts_best_and_eta_from_events(scripted_stream: Scripted) -> None:
    client = Client(scripted_stream.url, "key", reconnect_delay_s=0.01)
    state = JobProgress(str(JOB), n_trials=3, max_parallel=1, metric="val_loss", maximize=False)
    for event in client.events(JOB):
        state.apply(event)
    assert (state.finished, state.count("fail"), state.status) == (1, 0, "completed")
    assert state.ranked()[0].number == 0 and state.ranked()[0].epochs == 1
    assert state.eta_s() == pytest.approx(1.5 * 2)  # 2 trials left at 1.5 s, one at a time


# -- client and CLI against the real API --------------------------------------------------------
SPACE = {"optimizers": {"adamw": {}, "ademamix": {}}}
TUNED_JOB = {
    "name": "cli-test",
    "task": {
        "model": {"name": "mlp", "params": {"width": 16}},
        "dataset": {"name": "iris"},
        "epochs": 2,
        "batch_size": 32,
        "metric": "val_accuracy",
        "direction": "maximize",
        "seed": 0,
    },
    "search_space": SPACE,
    "lookahead": {},
    "schedule": {"cosine": {"warmup_frac": {"type": "float", "low": 0.05, "high": 0.3}}},
    "n_trials": 3,
    "max_parallel": 1,
    "sampler": {"name": "random"},
}


@dataclass
class Live:
    url: str
    key: str
    job: JobRead
    client: Client

    def cli(self, *args: str) -> Any:
        env = {"OPTSERVE_URL": self.url, "OPTSERVE_API_KEY": self.key, "COLUMNS": "200"}
        return CliRunner().invoke(cli.app, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real API server over a job whose three trials the real runner trained."""
    from service.app import create_app
    from service.migrate import upgrade
    from workers.trial_runner import run_trial

    data = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        apply_env(mp, {"OPTSERVE_DATA_DIR": str(data), "OPTSERVE_ENV": "testing"})
        upgrade()
        key = make_key("tenant-a")
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(), port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{port}"
            client = Client(url, key)
            _wait_up(client)
            job = client.submit(TUNED_JOB)
            for slot in range(3):
                outcome = run_trial(str(job.id), slot, "w1")
                assert not outcome.startswith("skipped"), outcome
            yield Live(url, key, client.job(job.id), client)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            apply_env(mp, {})


def _wait_up(client: Client) -> None:
    for _ in range(200):
        try:
            client.request("GET", "/v1/health")
            return
        except (httpx.TransportError, ApiError):
            threading.Event().wait(0.05)
    raise AssertionError("API did not start")


def test_client_reads_the_job_and_pages_through_trials(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert live.job.status == "completed", live.job
    monkeypatch.setattr("service.client.TRIALS_PAGE", 2)  # three trials: two pages
    trials = list(live.client.trials(live.job.id))
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.number for t in live.client.trials(live.job.id, limit=1)] == [0]
    assert list(live.client.trials(live.job.id, state="fail")) == []
    best = live.client.best(live.job.id)
    complete = [t for t in trials if t.state == "complete" and t.value is not None]
    assert best.value == max(t.value for t in complete if t.value is not None)


def test_another_tenants_job_is_a_404_for_client_and_cli(live: Live) -> None:
    other = Client(live.url, make_key("tenant-b"))
    with pytest.raises(ApiError) as err:
        other.job(live.job.id)
    assert err.value.status_code == 404
    result = live.cli("status", str(live.job.id), "--key", make_key("tenant-c"))
    assert result.exit_code == 1
    assert "404" in result.output


def test_upload_dataset_sends_the_multipart_form(live: Live, tmp_path: Path) -> None:
    filename, payload, form = dataset_file("csv")
    path = tmp_path / filename
    path.write_bytes(payload)
    read = live.client.upload_dataset(path, name="mine", target=form["target"])
    assert (read.name, read.target, read.format, read.n_examples) == ("mine", "label", "csv", 300)


def test_best_formats(live: Live) -> None:
    best = live.client.best(live.job.id)
    as_json = live.cli("best", str(live.job.id), "--format", "json")
    assert json.loads(as_json.output) == best.model_dump(mode="json")
    import yaml

    as_yaml = live.cli("best", str(live.job.id), "--format", "yaml")
    assert yaml.safe_load(as_yaml.output) == best.model_dump(mode="json")


def test_schedule_params_read_back_as_the_worker_sampled_them(live: Live) -> None:
    """The snippet's schedule equals what ``workers.objective.suggest`` gives for the
    trial's own parameters (fixed ones included, which are no Optuna parameter)."""
    for t in live.client.trials(live.job.id):
        config = suggest(optuna.trial.FixedTrial(t.params), live.job.resolved_space.model_dump())
        assert schedule_of(t.params, live.job.resolved_space) == (
            config.schedule,
            config.schedule_params,
        )
        assert config.hyperparameters == t.hyperparameters


CHECK_SNIPPET = """
import json, sys, torch, optimizers
from optimizers.schedules import warmup_cosine
namespace = {}
exec(sys.stdin.read(), namespace)
model = torch.nn.Linear(3, 2)
optimizer, scheduler = namespace["make_optimizer"](model.parameters(), 40)
hyperparameters = json.loads(sys.argv[2])
expected = optimizers.build(sys.argv[1], model.parameters(), total_steps=40, **hyperparameters)
inner = getattr(optimizer, "optimizer", optimizer)
inner_expected = getattr(expected, "optimizer", expected)
def strip(groups):
    # the scheduler moved ``lr`` to ``initial_lr`` and set ``lr`` to its first multiple
    return [
        {**{k: v for k, v in g.items() if k not in ("params", "initial_lr")},
         "lr": g.get("initial_lr", g["lr"])}
        for g in groups
    ]
sched = json.loads(sys.argv[3])
lrs = [scheduler.lr_lambdas[0](s) for s in (0, 5, 20, 40)]
print(json.dumps({
    "cls": [type(optimizer).__name__, type(inner).__name__],
    "expected_cls": [type(expected).__name__, type(inner_expected).__name__],
    "same_groups": repr(strip(optimizer.param_groups)) == repr(strip(expected.param_groups)),
    "same_inner": repr(strip(inner.param_groups)) == repr(strip(inner_expected.param_groups)),
    "lookahead": [[o.k, o.alpha] for o in (optimizer, expected)],
    "lrs": lrs,
    "expected_lrs": [warmup_cosine(s, 40, **sched) for s in (0, 5, 20, 40)],
}))
"""


def test_best_python_snippet_builds_the_tuned_optimizer_and_schedule(live: Live) -> None:
    best = live.client.best(live.job.id)
    assert best.optimizer.startswith("lookahead+"), best
    snippet = live.cli("best", str(live.job.id), "--format", "python").output
    assert "optimizers.build(" in snippet and "optimizers.build_schedule(" in snippet
    config = suggest(optuna.trial.FixedTrial(best.params), live.job.resolved_space.model_dump())
    assert config.schedule == "cosine"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHECK_SNIPPET,
            best.optimizer,
            json.dumps(best.hyperparameters),
            json.dumps(config.schedule_params),
        ],
        input=snippet,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["cls"] == result["expected_cls"] == ["Lookahead", result["expected_cls"][1]]
    assert result["cls"][1] in ("AdamW", "AdEMAMix")
    assert result["same_groups"] and result["same_inner"]
    (got_k, got_alpha), want = result["lookahead"]
    assert [got_k, got_alpha] == want
    assert [got_k, got_alpha] == [
        best.hyperparameters["lookahead_k"],
        best.hyperparameters["lookahead_alpha"],
    ]
    assert result["lrs"] == pytest.approx(result["expected_lrs"])
    assert result["lrs"][-1] == pytest.approx(0.0)  # cosine to final_frac 0, not constant


def test_trials_command_table_and_json(live: Live) -> None:
    as_json = json.loads(live.cli("trials", str(live.job.id), "--format", "json").output)
    assert [t["number"] for t in as_json] == [0, 1, 2]
    assert as_json == [t.model_dump(mode="json") for t in live.client.trials(live.job.id)]
    table = live.cli("trials", str(live.job.id), "--state", "complete").output
    assert "complete" in table and "lookahead+" in table


def test_watch_of_a_finished_job_ends_with_its_best_configuration(live: Live) -> None:
    result = live.cli("watch", str(live.job.id))
    assert result.exit_code == 0, result.output
    head, _, tail = result.output.rpartition("best configuration:")
    assert "finished 3" in head and "top trials" in head
    assert json.loads(tail) == live.client.best(live.job.id).model_dump(mode="json")


class NoStream(Client):
    """A client whose event stream always fails, as behind a buffering proxy."""

    def events(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raise httpx.ReadError("stream cut")


@pytest.mark.parametrize("client_class", [Client, NoStream], ids=["events", "polling"])
def test_wait_with_progress_follows_a_running_job(live: Live, client_class: type[Client]) -> None:
    """The display follows the event stream (needs the events endpoint); when the
    stream fails it polls until the job ends."""
    from rich.console import Console

    from workers.trial_runner import run_trial

    job = live.client.submit({**TUNED_JOB, "n_trials": 1, "name": client_class.__name__})
    worker = threading.Timer(0.5, run_trial, args=(str(job.id), 0, "w1"))
    console = Console(record=True, width=200)
    worker.start()
    try:
        done = client_class(live.url, live.key).wait(
            job.id, progress=True, console=console, poll_s=0.2, timeout_s=120
        )
    finally:
        worker.join()
    assert done.status == "completed"
    text = console.export_text()
    assert ("event stream unavailable" in text) == (client_class is NoStream)
    assert "finished 1" in text and "top trials" in text
    # only events carry epochs: the top-trials row of trial 0 shows its 2 epochs
    followed = re.search(r"│ 0 +│ \S+ +│ [\d.]+ +│ 2 +│", text) is not None
    assert followed == (client_class is Client), text


# -- needs the events endpoint (helper "events") --------------------------------------------------
def test_events_backlog_replays_the_job(live: Live) -> None:
    events = list(live.client.events(live.job.id, follow=False))
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    finished = [e for e in events if isinstance(e, TrialFinished)]
    assert sorted(e.trial for e in finished) == [0, 1, 2]
    epochs = [e for e in events if isinstance(e, TrialEpoch)]
    assert len(epochs) == 3 * 2
    assert isinstance(events[-1], JobFinished) and events[-1].status == "completed"
    tail = list(live.client.events(live.job.id, last_event_id=seqs[-3], follow=False))
    assert [e.seq for e in tail] == seqs[-2:]
    # the progress folded from the events agrees with the job read
    state = JobProgress.for_job(live.job)
    for event in events:
        state.apply(event)
    assert state.finished == live.job.n_finished == 3


def test_events_of_another_tenants_job_fail_at_once_with_404(live: Live) -> None:
    other = Client(live.url, make_key("tenant-d"), max_reconnects=0)
    with pytest.raises(ApiError) as err:
        next(iter(other.events(live.job.id)))
    assert err.value.status_code == 404


# -- needs the bulk curves endpoint (helper "ops") -------------------------------------------------
def _expected_rows(live: Live) -> tuple[list[Any], dict[int, list[Any]]]:
    trials = list(live.client.trials(live.job.id))
    curves = {c.number: c.points for c in live.client.curves(live.job.id)}
    for t in trials:
        assert curves[t.number] == live.client.curve(live.job.id, t.number).points
    return trials, curves


def _flat(trials: list[Any], curves: dict[int, list[Any]]) -> list[tuple[Any, ...]]:
    return [
        (t.number, p.epoch, t.state, t.value, t.params, t.hyperparameters, p.val_metric, p.metrics)
        for t in trials
        for p in curves[t.number]
    ]


def test_export_csv_round_trip(live: Live, tmp_path: Path) -> None:
    trials, curves = _expected_rows(live)
    out = tmp_path / "job.csv"
    result = live.cli("export", str(live.job.id), "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(len(curves[t.number]) for t in trials) == 6
    back = []
    for row in rows:
        params = {k[6:]: _csv_value(v) for k, v in row.items() if k.startswith("param.") and v}
        own = _hps(trials, row)
        hps = {k[3:]: _csv_value(v) for k, v in row.items() if k.startswith("hp.") and k[3:] in own}
        metrics = {k[7:]: _csv_value(v) for k, v in row.items() if k.startswith("metric.") and v}
        back.append(
            (
                int(row["trial"]),
                int(row["epoch"]),
                row["state"],
                float(row["value"]) if row["value"] else None,
                params,
                hps,
                float(row["val_metric"]),
                metrics,
            )
        )
    assert back == _flat(trials, curves)


def _csv_value(text: str) -> Any:
    if text == "":
        return None
    for parse_as in (int, float):
        try:
            return parse_as(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def test_export_parquet_round_trip(live: Live, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    trials, curves = _expected_rows(live)
    out = tmp_path / "job.parquet"
    result = live.cli("export", str(live.job.id), "-o", str(out))  # format from the suffix
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 6
    back = [
        (
            r["trial"],
            r["epoch"],
            r["state"],
            r["value"],
            {k[6:]: v for k, v in r.items() if k.startswith("param.") and v is not None},
            {k[3:]: v for k, v in r.items() if k.startswith("hp.") and k[3:] in _hps(trials, r)},
            r["val_metric"],
            {k[7:]: v for k, v in r.items() if k.startswith("metric.") and v is not None},
        )
        for r in rows
    ]
    assert back == _flat(trials, curves)


def _hps(trials: list[Any], row: dict[str, Any]) -> set[str]:
    return set(next(t for t in trials if t.number == int(row["trial"])).hyperparameters)


def test_export_json_round_trip(live: Live, tmp_path: Path) -> None:
    trials, curves = _expected_rows(live)
    out = tmp_path / "job.json"
    assert live.client.export(live.job.id, out, format="json") == 3
    data = json.loads(out.read_text())
    assert data["job"]["id"] == str(live.job.id)
    assert [t["number"] for t in data["trials"]] == [t.number for t in trials]
    for got, t in zip(data["trials"], trials, strict=True):
        assert {k: v for k, v in got.items() if k != "points"} == t.model_dump(mode="json")
        assert got["points"] == [p.model_dump(mode="json") for p in curves[t.number]]


def test_export_refuses_an_unknown_format(live: Live, tmp_path: Path) -> None:
    result = live.cli("export", str(live.job.id), "-o", str(tmp_path / "job.xlsx"))
    assert result.exit_code == 2
    assert "unknown export format" in result.output


def test_sse_lines_end_only_at_cr_or_lf() -> None:
    """JSON text may hold U+2028, U+2029 or U+0085 unescaped: none ends an SSE line."""
    from service.sse import SSEParser

    parser = SSEParser()
    (message,) = parser.feed('id: 1\ndata: {"r": "a\u2028b\u2029c\x85d"}\n\n')
    assert json.loads(message.data) == {"r": "a\u2028b\u2029c\x85d"}
