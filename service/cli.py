"""The ``optserve`` command: run the stack, manage keys, submit and read jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from service.config import get_settings

app = typer.Typer(
    help="optserve: which optimizer, with which hyperparameters.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
console = Console()

URL = Annotated[str, typer.Option(envvar="OPTSERVE_URL", help="API base URL")]
KEY = Annotated[
    str | None, typer.Option(envvar="OPTSERVE_API_KEY", help="API key (default: the data folder's)")
]


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
    import logging

    from workers.reconcile import run_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s reconciler %(message)s")
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
def _client(url: str, key: str | None) -> Any:
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


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from service.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        console.print(f"[red]error {exc.status_code}[/red]: {json.dumps(exc.body, indent=2)}")
        raise typer.Exit(1) from None


@app.command()
def submit(
    file: Path,
    watch: Annotated[bool, typer.Option("--watch", help="follow until the job ends")] = False,
    url: URL = "http://127.0.0.1:8000",
    key: KEY = None,
) -> None:
    """Submit a job from a YAML or JSON file."""
    client = _client(url, key)
    job = _call(client.submit, _load_spec(file))
    console.print(f"submitted job {job.id} ({job.status})")
    if watch:
        _watch(client, str(job.id))


def _watch(client: Any, job_id: str) -> None:
    def show(job: Any) -> None:
        counts = ", ".join(f"{k} {v}" for k, v in job.counts.items() if v)
        best = f" best {job.best.value:.4g}" if job.best and job.best.value is not None else ""
        console.print(
            f"{job.status}: {job.n_finished}/{job.spec.n_trials} finished ({counts}){best}"
        )

    job = client.wait(job_id, poll_s=2.0, on_update=show)
    if job.best is not None:
        console.print_json(job.best.model_dump_json())


@app.command()
def jobs(url: URL = "http://127.0.0.1:8000", key: KEY = None) -> None:
    """List your jobs."""
    page = _call(_client(url, key).jobs)
    table = Table("id", "name", "status", "finished", "best", "created")
    for job in page.items:
        best = "" if job.best is None or job.best.value is None else f"{job.best.value:.4g}"
        table.add_row(
            str(job.id),
            job.name or "",
            job.status,
            f"{job.n_finished}/{job.spec.n_trials}",
            best,
            str(job.created_at)[:19],
        )
    console.print(table)


@app.command()
def status(job_id: str, url: URL = "http://127.0.0.1:8000", key: KEY = None) -> None:
    """Show one job."""
    console.print_json(_call(_client(url, key).job, job_id).model_dump_json())


@app.command()
def best(job_id: str, url: URL = "http://127.0.0.1:8000", key: KEY = None) -> None:
    """The best configuration found so far."""
    console.print_json(_call(_client(url, key).best, job_id).model_dump_json())


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
