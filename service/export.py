"""A job's trials with their learning curves, written as CSV, Parquet or JSON.

CSV and Parquet are long tables, one row per (trial, epoch), the trial's own columns
repeated on each of its rows: parameters flattened as ``param.<name>`` (Optuna's names,
``param.adamw.lr``), constructor hyperparameters as ``hp.<name>``, every reported
metric of the epoch as ``metric.<name>``. A trial with no epoch (failed before its
first) still gets one row, with empty epoch columns, so that every trial is there.
JSON is nested: ``{"job": ..., "trials": [{...trial, "points": [...]}, ...]}``.

Values are written as the API returns them (N2: a non-finite objective value is null
with ``value_kind`` saying which).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from api_schemas import CurvePoint, JobRead, TrialRead

if TYPE_CHECKING:
    from service.client import Client

ExportFormat = Literal["csv", "parquet", "json"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet", "json")

TRIAL_COLUMNS = (
    "job_id",
    "trial",
    "attempt",
    "state",
    "optimizer",
    "value",
    "value_kind",
    "duration_s",
    "diverged",
    "failure_reason",
    "seed",
    "device",
    "started_at",
    "finished_at",
)
POINT_COLUMNS = ("epoch", "step", "wall_time", "train_loss", "val_loss", "val_metric")


def trial_columns(job_id: uuid.UUID, trial: TrialRead) -> dict[str, Any]:
    """The columns of one trial that every one of its rows repeats."""
    row: dict[str, Any] = {
        "job_id": str(job_id),
        "trial": trial.number,
        "attempt": trial.attempt,
        "state": trial.state,
        "optimizer": trial.optimizer,
        "value": trial.value,
        "value_kind": trial.value_kind,
        "duration_s": trial.duration_s,
        "diverged": trial.diverged,
        "failure_reason": trial.failure_reason,
        "seed": trial.seed,
        "device": trial.device,
        "started_at": trial.started_at.isoformat() if trial.started_at else None,
        "finished_at": trial.finished_at.isoformat() if trial.finished_at else None,
    }
    row.update({f"param.{k}": v for k, v in trial.params.items()})
    row.update({f"hp.{k}": v for k, v in trial.hyperparameters.items()})
    return row


def point_columns(point: CurvePoint | None) -> dict[str, Any]:
    if point is None:
        return dict.fromkeys(POINT_COLUMNS)
    row = {name: getattr(point, name) for name in POINT_COLUMNS}
    row.update({f"metric.{k}": v for k, v in point.metrics.items()})
    return row


def long_rows(
    job_id: uuid.UUID,
    trials: Iterable[TrialRead],
    points: Mapping[int, Sequence[CurvePoint]],
) -> list[dict[str, Any]]:
    """One row per (trial, epoch), in trial then epoch order."""
    rows: list[dict[str, Any]] = []
    for trial in trials:
        base = trial_columns(job_id, trial)
        own: Sequence[CurvePoint | None] = points.get(trial.number) or [None]
        rows.extend({**base, **point_columns(point)} for point in own)
    return rows


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every column in first-seen order (trials of different optimizers differ)."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns_of(rows), restval="")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def write_parquet(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Each column gets one Arrow type from its values (bool, int64, float64, else string),
    since a parameter may hold ints for one optimizer and floats for another."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = columns_of(rows)
    arrays = [_arrow_column([row.get(name) for row in rows], pa) for name in names]
    pq.write_table(pa.table(dict(zip(names, arrays, strict=True))), path)


def _arrow_column(values: list[Any], pa: Any) -> Any:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64())
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def nested(
    job: JobRead, trials: Iterable[TrialRead], points: Mapping[int, Sequence[CurvePoint]]
) -> dict[str, Any]:
    return {
        "job": job.model_dump(mode="json"),
        "trials": [
            {
                **t.model_dump(mode="json"),
                "points": [p.model_dump(mode="json") for p in points.get(t.number, [])],
            }
            for t in trials
        ],
    }


def format_of(path: Path, format: str | None) -> ExportFormat:
    """The explicit format, else the file's suffix."""
    name = (format or path.suffix.lstrip(".")).lower()
    for known in FORMATS:
        if name == known:
            return known
    raise ValueError(f"unknown export format {name!r}: expected one of {', '.join(FORMATS)}")


def export_job(
    client: Client, job_id: uuid.UUID | str, path: Path, format: str | None = None
) -> int:
    """Fetch the job, every trial and every curve, and write them to ``path``.

    Returns the number of rows written (JSON: the number of trials).
    """
    fmt = format_of(path, format)
    job = client.job(job_id)
    trials = list(client.trials(job.id))
    points = {curve.number: list(curve.points) for curve in client.curves(job.id)}
    if fmt == "json":
        path.write_text(json.dumps(nested(job, trials, points), indent=2, allow_nan=False))
        return len(trials)
    rows = long_rows(job.id, trials, points)
    (write_csv if fmt == "csv" else write_parquet)(rows, path)
    return len(rows)


__all__ = ["FORMATS", "export_job", "format_of", "long_rows", "nested"]
