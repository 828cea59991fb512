"""The ``optserve`` command: run the stack, manage keys, submit and read jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

from service.config import get_settings

if TYPE_CHECKING:
    from service.client import Client

app = typer.Typer(
    help="optserve: which optimizer, with which hyperparameters.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
console = Console()
err_console = Console(stderr=True)

URL = Annotated[str, typer.Option(envvar="OPTSERVE_URL", help="API base URL")]
KEY = Annotated[
    str | None, typer.Option(envvar="OPTSERVE_API_KEY", help="API key (default: the data folder's)")
]
DEFAULT_URL = "http://127.0.0.1:8000"
TrialsFormat = Literal["table", "json"]
BestFormat = Literal["json", "yaml", "python"]
ExportFormat = Literal["csv", "parquet", "json"]
T = TypeVar("T")


def _key_file() -> Path:
    return get_settings().DATA_DIR / "api-key"


# -- running the stack ------------------------------------------------------------------
def _migrate() -> None:
    """Our migrations, then Optuna's own (its tables are created once, here, not by
    workers racing each other on a fresh database)."""
    from service.migrate import upgrade
    from workers.optuna_storage import init_storage

    upgrade()
    init_storage()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply our migrations and let Optuna create or migrate its own tables."""
    _migrate()
    console.print("database at head")


@app.command()
def api(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Serve the REST API (uvicorn)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host or settings.API_HOST,
        port=port or settings.API_PORT,
        log_level="info",
    )


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="trials at once")] = None,
    name: Annotated[str | None, typer.Option(help="worker node name")] = None,
    gpus: Annotated[
        str | None, typer.Option(help="'all' or '0,1': one worker process per GPU")
    ] = None,
) -> None:
    """Run a Celery worker that trains trials (one trial per process)."""
    if gpus is not None:
        _worker_per_gpu(_gpu_ids(gpus))
        return
    from workers.celery_app import app as celery_app

    settings = get_settings()
    n = concurrency or settings.WORKER_CONCURRENCY
    os.environ["OPTSERVE_WORKER_CONCURRENCY"] = str(n)
    node = name or f"optserve-{os.getpid()}@%h"
    celery_app.worker_main(
        [
            *("worker", "-Q", settings.QUEUE, "-c", str(n), "-n", node),
            *("--loglevel", "INFO", "--without-gossip", "--without-mingle"),
        ]
    )


def _gpu_ids(spec: str) -> list[str]:
    """``all`` is every visible CUDA device; none visible means one CPU worker."""
    if spec.strip() == "all":
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    ids = [part.strip() for part in spec.split(",") if part.strip()]
    if not all(i.isdigit() for i in ids):
        raise typer.BadParameter(f"--gpus takes 'all' or device numbers like '0,1', not {spec!r}")
    return ids


def _worker_per_gpu(ids: list[str]) -> None:
    """One single-trial worker process per GPU, each seeing only its own device."""
    exe = [sys.executable, "-m", "service.cli", "worker", "--concurrency", "1"]
    if not ids:
        console.print("no CUDA device visible: one CPU worker")
        _supervise([subprocess.Popen(exe)])
        return
    procs = []
    for gpu in ids:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
        procs.append(subprocess.Popen([*exe, "--name", f"gpu{gpu}-{os.getpid()}@%h"], env=env))
    _supervise(procs)


@app.command()
def reconciler() -> None:
    """Reap lost trials, re-publish lost messages, dispatch and finish jobs, forever."""
    from service import logs
    from workers.reconcile import run_forever

    logs.configure("reconciler", optuna=True)
    run_forever()


@app.command()
def up() -> None:
    """Migrate, then run API + worker + reconciler in the foreground (Ctrl-C stops all)."""
    from service.db import session_scope
    from service.tenants.service import bootstrap_key

    _migrate()
    with session_scope() as session:
        key, created = bootstrap_key(session, _key_file())
    settings = get_settings()
    url = f"http://{settings.API_HOST}:{settings.API_PORT}"
    if created:
        console.print(f"[bold]Your API key (shown once, kept in {_key_file()}):[/bold] {key}")
    console.print(f"API on {url}  (docs: {url}/docs)")
    exe = [sys.executable, "-m", "service.cli"]
    procs = [subprocess.Popen([*exe, cmd]) for cmd in ("api", "worker", "reconciler")]
    _supervise(procs)


def _supervise(procs: list[subprocess.Popen[bytes]]) -> None:
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(p.poll() is None for p in procs):
        time.sleep(0.5)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    codes = [p.returncode for p in procs]
    raise typer.Exit(0 if stopping else max(abs(c or 0) for c in codes) or 1)


# -- keys --------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="tenant name")],
    read_only: Annotated[bool, typer.Option(help="jobs:read only")] = False,
) -> None:
    """Create an API key for a tenant (created if new); prints the key once."""
    from service.db import session_scope
    from service.tenants.service import add_key, get_or_create_tenant

    scopes = "jobs:read" if read_only else "jobs:read jobs:write"
    with session_scope() as session:
        key = add_key(session, get_or_create_tenant(session, tenant), scopes=scopes)
    typer.echo(key)


# -- jobs --------------------------------------------------------------------------------
# Every command below talks to the API through ``service.client.Client``: one code path.
JobArg = Annotated[str, typer.Argument(help="job id")]


def _client(url: str, key: str | None) -> Client:
    from service.client import Client

    if key is None:
        if not _key_file().exists():
            raise typer.BadParameter("no API key: set OPTSERVE_API_KEY or run `optserve up` once")
        key = _key_file().read_text().strip()
    return Client(url, key)


def _load_spec(path: Path) -> dict[str, Any]:
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a JSON/YAML object")
    return data


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a client call; an API error is printed with its body and exits 1."""
    from service.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        err_console.print(f"[red]error {exc.status_code}[/red]: {json.dumps(exc.body, indent=2)}")
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        err_console.print(f"[red]cannot reach the API[/red]: {exc}")
        raise typer.Exit(1) from None


@app.command()
def submit(
    file: Path,
    watch: Annotated[bool, typer.Option("--watch", help="follow until the job ends")] = False,
    url: URL = DEFAULT_URL,
    key: KEY = None,
) -> None:
    """Submit a job from a YAML or JSON file."""
    client = _client(url, key)
    job = _call(client.submit, _load_spec(file))
    console.print(f"submitted job {job.id} ({job.status})")
    if watch:
        _watch(client, str(job.id))


@app.command()
def watch(job_id: JobArg, url: URL = DEFAULT_URL, key: KEY = None) -> None:
    """Follow a job live (progress bar, top trials) until it ends, then print its best."""
    _watch(_client(url, key), job_id)


def _watch(client: Client, job_id: str) -> None:
    """The live display until the job ends; the output ends with the best configuration."""
    from service.client import ApiError

    try:
        job = _call(client.wait, job_id, progress=True, console=console)
    except KeyboardInterrupt:
        console.print(f"stopped watching; the job goes on (`optserve watch {job_id}`)")
        raise typer.Exit(130) from None
    console.print(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""))
    try:
        best = client.best(job_id)
    except ApiError:
        console.print("no completed trial: no best configuration")
        raise typer.Exit(1) from None
    console.print("best configuration:")
    typer.echo(best.model_dump_json(indent=2))


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 50,
    url: URL = DEFAULT_URL,
    key: KEY = None,
) -> None:
    """List your jobs."""
    page = _call(_client(url, key).jobs, limit=limit, status=status)
    table = Table("id", "name", "status", "finished", "best", "created")
    for job in page.items:
        table.add_row(
            str(job.id),
            job.name or "",
            job.status,
            f"{job.n_finished}/{job.spec.n_trials}",
            _num(job.best.value if job.best else None),
            str(job.created_at)[:19],
        )
    console.print(table)


@app.command()
def status(job_id: JobArg, url: URL = DEFAULT_URL, key: KEY = None) -> None:
    """Show one job."""
    console.print_json(_call(_client(url, key).job, job_id).model_dump_json())


@app.command()
def cancel(job_id: JobArg, url: URL = DEFAULT_URL, key: KEY = None) -> None:
    """Cancel a job: queued trials never start, running ones stop at their next epoch."""
    job = _call(_client(url, key).cancel, job_id)
    console.print(f"job {job.id} {job.status}")


@app.command()
def trials(
    job_id: JobArg,
    state: Annotated[
        str | None, typer.Option(help="complete, pruned, fail, cancelled, running or waiting")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many")] = None,
    format: Annotated[TrialsFormat, typer.Option("--format", "-f")] = "table",
    url: URL = DEFAULT_URL,
    key: KEY = None,
) -> None:
    """Every trial of a job (every page), in trial-number order."""
    client = _client(url, key)
    rows = _call(lambda: list(client.trials(job_id, state=state, limit=limit)))
    if format == "json":
        typer.echo(json.dumps([t.model_dump(mode="json") for t in rows], indent=2))
        return
    table = Table("trial", "state", "optimizer", "value", "duration s", "params", "reason")
    for t in rows:
        params = ", ".join(f"{k}={_num(v)}" for k, v in t.params.items() if k != "optimizer")
        value = _num(t.value) if t.value_kind in (None, "finite") else t.value_kind
        duration = _num(t.duration_s, ".1f")
        table.add_row(
            str(t.number), t.state, t.optimizer or "", value, duration, params, t.failure_reason
        )
    console.print(table)


@app.command()
def best(
    job_id: JobArg,
    format: Annotated[BestFormat, typer.Option("--format", "-f")] = "json",
    url: URL = DEFAULT_URL,
    key: KEY = None,
) -> None:
    """The best configuration so far: json, yaml, or a python snippet that builds it."""
    client = _client(url, key)
    found = _call(client.best, job_id)
    if format == "json":
        typer.echo(found.model_dump_json(indent=2))
    elif format == "yaml":
        typer.echo(yaml.safe_dump(found.model_dump(mode="json"), sort_keys=False), nl=False)
    else:
        from service.snippet import python_snippet

        typer.echo(python_snippet(found, _call(client.job, job_id)), nl=False)


@app.command()
def export(
    job_id: JobArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    format: Annotated[
        ExportFormat | None, typer.Option("--format", "-f", help="default: the file's suffix")
    ] = None,
    url: URL = DEFAULT_URL,
    key: KEY = None,
) -> None:
    """Every trial with its hyperparameters and per-epoch curve, as csv, parquet or json.

    csv/parquet: one row per (trial, epoch), params as ``param.<name>``; json: nested.
    """
    from service.export import format_of

    try:
        fmt = format_of(output, format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None
    n = _call(_client(url, key).export, job_id, output, format=fmt)
    unit = "trials" if fmt == "json" else "rows"
    console.print(f"wrote {n} {unit} to {output}")


@app.command()
def upload(
    file: Path,
    target: Annotated[str | None, typer.Option(help="label column (csv, parquet)")] = None,
    name: Annotated[str | None, typer.Option(help="a name to list it by")] = None,
    url: URL = DEFAULT_URL,
    key: KEY = None,
) -> None:
    """Upload a dataset (.npz, .csv, .parquet); use the printed id as task.dataset.name."""
    found = _call(_client(url, key).upload_dataset, file, name=name, target=target)
    console.print_json(found.model_dump_json())


def _num(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return ""
    return format(value, spec) if isinstance(value, float) else str(value)


def _register_commands() -> None:
    from service.history.cli import register as register_history
    from service.recommend.cli import register as register_recommend

    register_recommend(app)
    register_history(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
