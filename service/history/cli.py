"""``optserve seed-history`` and ``optserve history export|import``.

Like ``keys create``, these are administrator commands: export, import and sharing work
on the database directly (the one ``OPTSERVE_DATABASE_URL`` names, the data folder's
SQLite file by default). ``seed-history --url`` submits through a running API instead
and lets its workers train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.history.suite import SUITE_NAMES

console = Console()
history_app = typer.Typer(help="Export and import tuning history.", no_args_is_help=True)

SHIPPED = Path(__file__).resolve().parent / "data" / "seed_history.json.gz"
"""The seed history that ships with optserve (the ``small`` suite, shared)."""

TENANT = Annotated[str, typer.Option(help="tenant that owns the jobs (created if new)")]


def _migrated() -> None:
    from service.cli import _migrate  # one definition of "bring the database to head"

    _migrate()


def seed_history(
    suite: Annotated[str, typer.Option(help=f"which suite: {' | '.join(SUITE_NAMES)}")] = "small",
    tenant: Annotated[
        str | None, typer.Option(help="inline: tenant that owns the jobs [default: default]")
    ] = None,
    share: Annotated[
        bool, typer.Option("--share/--no-share", help="let every tenant's recommendations use it")
    ] = True,
    url: Annotated[
        str | None, typer.Option(help="submit through this running API (else run inline)")
    ] = None,
    key: Annotated[
        str | None, typer.Option(envvar="OPTSERVE_API_KEY", help="API key with --url")
    ] = None,
) -> None:
    """Run the seed suite (every built-in model on each compatible dataset) as small jobs.

    Idempotent: running it again finds the suite's jobs (by idempotency key) and only
    runs what is left. Inline, it trains in this process; with --url, the API's workers
    train and the tenant is the API key's.
    """
    from service.db import session_scope
    from service.history.runner import SeedResult, ensure_fingerprints, set_shared
    from service.history.suite import get_suite

    try:
        chosen = get_suite(suite)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--suite") from None

    def show(result: SeedResult) -> None:
        console.print(f"{result.task:34s} {result.status:10s} job {result.job_id}", soft_wrap=True)

    n_jobs, n_trials = len(chosen.tasks), chosen.n_trials
    console.print(f"seed suite {chosen.name!r}: {n_jobs} jobs x {n_trials} trials")
    if url is None:
        from service.history.runner import run_inline

        _migrated()
        results = run_inline(chosen, tenant=tenant or "default", share=share, on_job=show)
    else:
        if tenant is not None:
            msg = "with --url the API key decides the tenant"
            raise typer.BadParameter(msg, param_hint="--tenant")
        from service.cli import _call, _client
        from service.history.runner import run_via_api

        results = _call(run_via_api, chosen, _client(url, key), on_job=show)
        job_ids = [r.job_id for r in results]
        with session_scope() as session:  # sharing is an admin act on the database
            ensure_fingerprints(session, job_ids)
            found = set_shared(session, job_ids, True) if share else len(job_ids)
        if found < len(job_ids):
            console.print(
                f"[yellow]{len(job_ids) - found} jobs are not in this machine's database "
                "(OPTSERVE_DATABASE_URL): share them with `optserve share-job` where it is[/yellow]"
            )
    done = sum(r.status == "completed" for r in results)
    console.print(f"{done}/{len(results)} jobs completed" + (" (shared)" if share else ""))
    if done < len(results):
        raise typer.Exit(1)


@history_app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="output file; .json.gz is gzip-compressed")],
    tenant: Annotated[str | None, typer.Option(help="this tenant's jobs")] = None,
    all_tenants: Annotated[bool, typer.Option("--all", help="every tenant's jobs")] = False,
) -> None:
    """Write every finished job (spec, fingerprint, trials, curves) to a history file."""
    from sqlalchemy import select

    from service.db import session_scope
    from service.history.transfer import export_history, write_file
    from service.models import Tenant

    if (tenant is None) == (not all_tenants):
        msg = "give exactly one of --tenant NAME or --all"
        raise typer.BadParameter(msg, param_hint="--tenant")
    with session_scope() as session:
        tenant_id = None
        if tenant is not None:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == tenant))
            if tenant_id is None:
                raise typer.BadParameter(f"no tenant named {tenant!r}", param_hint="--tenant")
        history = export_history(session, tenant_id=tenant_id)
    size = write_file(history, file)
    n_trials = sum(len(j.trials) for j in history.jobs)
    console.print(f"wrote {len(history.jobs)} jobs, {n_trials} trials to {file} ({size:,} bytes)")


@history_app.command("import")
def import_(
    file: Annotated[Path | None, typer.Argument(help="a history file (.json or .json.gz)")] = None,
    shipped: Annotated[
        bool, typer.Option("--shipped", help="import the seed history that ships with optserve")
    ] = False,
    tenant: TENANT = "default",
    shared: Annotated[
        bool | None,
        typer.Option("--shared/--not-shared", help="override each job's shared flag"),
    ] = None,
) -> None:
    """Add a history file's jobs to a tenant; importing the same file again adds nothing."""
    from service.db import session_scope
    from service.history.transfer import HistoryFileError, import_history, read_file
    from service.tenants.service import get_or_create_tenant

    if (file is None) == (not shipped):
        raise typer.BadParameter("give a FILE or --shipped (not both)", param_hint="FILE")
    path = SHIPPED if shipped else file
    assert path is not None
    try:
        history = read_file(path)
    except HistoryFileError as exc:
        console.print(f"[red]error[/red]: {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    _migrated()
    with session_scope() as session:
        owner = get_or_create_tenant(session, tenant)
        result = import_history(session, history, tenant_id=owner.id, shared=shared)
    console.print(
        f"imported {len(result.created)} jobs into tenant {tenant!r}"
        f" ({len(result.skipped)} already present)"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optserve`` app."""
    app.command("seed-history")(seed_history)
    app.add_typer(history_app, name="history")
