"""``optserve recommend`` and ``optserve share-job``.

``recommend`` asks the API (``POST /v1/recommendations``) like every user command;
``share-job`` is an admin command that works on the database directly, like
``keys create``. (It is not ``jobs share``: ``optserve jobs`` is already the listing.)
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

URL = Annotated[str, typer.Option(envvar="OPTSERVE_URL", help="API base URL")]
KEY = Annotated[
    str | None, typer.Option(envvar="OPTSERVE_API_KEY", help="API key (default: the data folder's)")
]


def parse_assignments(items: list[str] | None, option: str) -> dict[str, Any]:
    """``["width=64", "act=gelu"]`` → ``{"width": 64, "act": "gelu"}`` (JSON scalars parsed)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def request_body(
    *,
    model: str,
    dataset: str,
    model_params: dict[str, Any],
    dataset_params: dict[str, Any],
    epochs: int | None,
    batch_size: int | None,
    metric: str | None,
    method: str,
    k: int,
    optimizers: str | None,
    budget: int | None,
) -> dict[str, Any]:
    """The ``POST /v1/recommendations`` body; options left out stay out (server defaults)."""
    task: dict[str, Any] = {
        "model": {"name": model, "params": model_params},
        "dataset": {"name": dataset, "params": dataset_params},
    }
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("metric", metric)):
        if value is not None:
            task[name] = value
    body: dict[str, Any] = {"task": task, "method": method, "k": k}
    if optimizers:
        body["optimizers"] = [o.strip() for o in optimizers.split(",") if o.strip()]
    if budget is not None:
        body["budget"] = budget
    return body


def _show(name: str, value: Any) -> str:
    return f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"


def _table(answer: dict[str, Any]) -> Table:
    table = Table("#", "optimizer", "expected", "similarity", "hyperparameters", "schedule", "jobs")
    for item in answer["items"]:
        hps = ", ".join(_show(k, v) for k, v in item["hyperparameters"].items())
        schedule = item["schedule"]["name"] if item["schedule"] else ""
        jobs = len({s["job_id"] for s in item["support"]})
        table.add_row(
            str(item["rank"]),
            item["optimizer"],
            f"{item['expected_score']:.3f}",
            f"{item['similarity']:.3f}",
            hps,
            schedule,
            str(jobs),
        )
    return table


def recommend(
    model: Annotated[str, typer.Option(help="catalogue model, e.g. cnn")],
    dataset: Annotated[str, typer.Option(help="built-in dataset name or uploaded dataset id")],
    model_param: Annotated[
        list[str] | None, typer.Option(help="model parameter KEY=VALUE (repeatable)")
    ] = None,
    dataset_param: Annotated[
        list[str] | None, typer.Option(help="dataset parameter KEY=VALUE (repeatable)")
    ] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    metric: Annotated[str | None, typer.Option()] = None,
    method: Annotated[str, typer.Option(help="nearest or portfolio")] = "nearest",
    k: Annotated[int, typer.Option(help="past tasks to learn from")] = 5,
    optimizers: Annotated[str | None, typer.Option(help="allowed optimizers: a,b")] = None,
    budget: Annotated[int | None, typer.Option(help="most configurations to return")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw answer")] = False,
    url: URL = "http://127.0.0.1:8000",
    key: KEY = None,
) -> None:
    """Recommend optimizers and hyperparameters for a model on a dataset, from past jobs."""
    from service import cli as main_cli

    body = request_body(
        model=model,
        dataset=dataset,
        model_params=parse_assignments(model_param, "--model-param"),
        dataset_params=parse_assignments(dataset_param, "--dataset-param"),
        epochs=epochs,
        batch_size=batch_size,
        metric=metric,
        method=method,
        k=k,
        optimizers=optimizers,
        budget=budget,
    )
    client = main_cli._client(url, key)
    answer = main_cli._call(client.recommend, body).model_dump(mode="json")
    if as_json:
        main_cli.console.print_json(json.dumps(answer))
        return
    if not answer["items"]:
        main_cli.console.print(
            f"no recommendation: {answer['n_past_tasks']} past task(s) to learn from"
        )
        return
    main_cli.console.print(_table(answer))


def share_job(
    job_id: Annotated[str, typer.Argument(help="the job's id")],
    unshare: Annotated[bool, typer.Option("--unshare", help="make it private again")] = False,
) -> None:
    """Admin: let every tenant's recommendations learn from this job (or stop it)."""
    from service.db import session_scope
    from service.models import Job

    try:
        ident = uuid.UUID(job_id)
    except ValueError:
        raise typer.BadParameter(f"not a job id: {job_id!r}", param_hint="JOB_ID") from None
    with session_scope() as session:
        job = session.get(Job, ident)
        if job is None:
            typer.echo(f"no job {job_id}", err=True)
            raise typer.Exit(1)
        job.shared = not unshare
    typer.echo(f"job {job_id} {'is private' if unshare else 'is shared'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optserve`` app."""
    app.command("recommend")(recommend)
    app.command("share-job")(share_job)
