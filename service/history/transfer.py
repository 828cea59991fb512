"""Export finished jobs to a history file, and import one into a tenant.

The file holds our own tables' view of each job (spec, resolved space, fingerprint,
status, sharing; every trial run with its parameters, seed, value and curve), which is
all that recommendations read. Optuna's study is not exported: an imported job is
finished, so nothing will sample from it again.

Import is idempotent: a job keeps its id when that id is free; the same file imported
again into the same tenant finds its jobs and creates nothing. Imported into a second
tenant of the same database, a job gets a derived id (``uuid5`` of tenant and id), so
that import is idempotent too.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api_schemas.common import decode_float, encode_float
from service.config import get_settings
from service.history.schema import (
    FORMAT,
    VERSION,
    HistoryCurvePoint,
    HistoryFile,
    HistoryJob,
    HistoryTrial,
)
from service.models import CurvePoint, Job, SlotStatus, TrialRun, TrialSlot, TrialState
from service.models._types import utcnow
from service.models.job import TERMINAL_JOB_STATUSES

MAX_FILE_BYTES = 256 * 1024 * 1024
"""The most a history file may hold once decompressed (a gzip bomb stops here)."""
_GZIP_MAGIC = b"\x1f\x8b"
_ID_NAMESPACE = uuid.UUID("6f1d3c52-41b5-4c1e-9a57-0a9f3c1e7b20")
_CHUNK = 500  # ids per IN (...) query: SQLite caps bound variables
_SLOT_STATUS = {
    TrialState.COMPLETE: SlotStatus.DONE,
    TrialState.PRUNED: SlotStatus.DONE,
    TrialState.FAIL: SlotStatus.FAILED,
    TrialState.CANCELLED: SlotStatus.CANCELLED,
}


class HistoryFileError(ValueError):
    """A history file that cannot be read or does not follow the format; says where."""


@dataclass
class ImportResult:
    created: list[uuid.UUID] = field(default_factory=list)
    skipped: list[uuid.UUID] = field(default_factory=list)  # already present


# -- export ------------------------------------------------------------------------------
def export_history(
    session: Session, *, tenant_id: uuid.UUID | None, job_ids: Iterable[uuid.UUID] | None = None
) -> HistoryFile:
    """Every finished job of ``tenant_id`` (every tenant's when None), oldest first."""
    stmt = select(Job).where(Job.status.in_(TERMINAL_JOB_STATUSES))
    if tenant_id is not None:
        stmt = stmt.where(Job.tenant_id == tenant_id)
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(list(job_ids)))
    jobs = list(session.scalars(stmt.order_by(Job.created_at, Job.id)))
    runs = _runs_by_job(session, [j.id for j in jobs])
    points = _points_by_run(session, [r.id for rs in runs.values() for r in rs])
    return HistoryFile(
        format=FORMAT,
        version=VERSION,
        exported_at=utcnow(),
        jobs=[_job_entry(job, runs.get(job.id, []), points) for job in jobs],
    )


def _chunks(ids: Sequence[uuid.UUID]) -> Iterable[Sequence[uuid.UUID]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _runs_by_job(session: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[TrialRun]]:
    out: dict[uuid.UUID, list[TrialRun]] = {}
    for chunk in _chunks(job_ids):
        stmt = (
            select(TrialRun)
            .where(TrialRun.job_id.in_(chunk), TrialRun.state != TrialState.RUNNING)
            .order_by(TrialRun.job_id, TrialRun.number)
        )
        for run in session.scalars(stmt):
            out.setdefault(run.job_id, []).append(run)
    return out


def _points_by_run(
    session: Session, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[CurvePoint]]:
    out: dict[uuid.UUID, list[CurvePoint]] = {}
    for chunk in _chunks(run_ids):
        stmt = (
            select(CurvePoint)
            .where(CurvePoint.trial_id.in_(chunk))
            .order_by(CurvePoint.trial_id, CurvePoint.epoch)
        )
        for point in session.scalars(stmt):
            out.setdefault(point.trial_id, []).append(point)
    return out


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    # SQLite gives back naive datetimes for timezone-aware columns; they are UTC
    return t if t is None or t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _job_entry(
    job: Job, runs: list[TrialRun], points: Mapping[uuid.UUID, list[CurvePoint]]
) -> HistoryJob:
    return HistoryJob(
        id=job.id,
        name=job.name,
        status=job.status,  # type: ignore[arg-type]  # terminal: filtered by the query
        error=job.error,
        shared=job.shared,
        spec=job.spec,
        resolved_space=job.resolved_space,
        fingerprint=job.fingerprint,
        created_at=_utc(job.created_at),  # type: ignore[arg-type]  # never null
        started_at=_utc(job.started_at),
        finished_at=_utc(job.finished_at),
        trials=[_trial_entry(run, points.get(run.id, [])) for run in runs],
    )


def _trial_entry(run: TrialRun, points: list[CurvePoint]) -> HistoryTrial:
    value, kind = encode_float(run.value)
    return HistoryTrial(
        number=run.number,
        slot=run.slot,
        attempt=run.attempt,
        state=run.state,  # type: ignore[arg-type]  # running runs are not exported
        optimizer=run.optimizer,
        params=run.params,
        hyperparameters=run.hyperparameters,
        value=value,
        value_kind=kind,
        seed=run.seed,
        failure_reason=run.failure_reason,
        diverged=run.diverged,
        device=run.device,
        n_parameters=run.n_parameters,
        versions=run.versions or {},
        source=run.source,
        started_at=_utc(run.started_at),
        finished_at=_utc(run.finished_at),
        curve=[
            HistoryCurvePoint(
                epoch=p.epoch,
                step=p.step,
                examples=p.examples,
                wall_time=p.wall_time,
                train_loss=p.train_loss,
                val_loss=p.val_loss,
                val_metric=p.val_metric,
                lr=p.lr,
                metrics=p.metrics or {},
            )
            for p in points
        ],
    )


# -- import ------------------------------------------------------------------------------
def import_history(
    session: Session, history: HistoryFile, *, tenant_id: uuid.UUID, shared: bool | None = None
) -> ImportResult:
    """Add the file's jobs to ``tenant_id``; ``shared`` overrides each job's own flag.

    Each job gets its fingerprint from the file, or computed here when the file has none
    (``service.recommend.fingerprint``), so recommendations can use it at once.
    """
    result = ImportResult()
    for entry in history.jobs:
        job_id = _target_id(session, entry.id, tenant_id)
        if job_id is None:
            result.skipped.append(entry.id)
            continue
        _add_job(session, entry, job_id, tenant_id, entry.shared if shared is None else shared)
        result.created.append(job_id)
    return result


def _target_id(session: Session, source_id: uuid.UUID, tenant_id: uuid.UUID) -> uuid.UUID | None:
    """The id the job takes in this database, or None when it is already here."""
    existing = session.get(Job, source_id)
    if existing is None:
        return source_id
    if existing.tenant_id == tenant_id:
        return None
    derived = uuid.uuid5(_ID_NAMESPACE, f"{tenant_id}/{source_id}")
    return None if session.get(Job, derived) is not None else derived


def _add_job(
    session: Session, entry: HistoryJob, job_id: uuid.UUID, tenant_id: uuid.UUID, shared: bool
) -> None:
    spec = entry.spec
    fingerprint = entry.fingerprint
    if fingerprint is None:
        from service.recommend.fingerprint import fingerprint_for_spec

        fingerprint = fingerprint_for_spec(session, tenant_id, spec)
    session.add(
        Job(
            id=job_id,
            tenant_id=tenant_id,
            name=entry.name,
            status=entry.status,
            spec=spec,
            resolved_space=entry.resolved_space,
            n_trials=int(spec["n_trials"]),
            max_parallel=int(spec.get("max_parallel") or 1),
            max_failed_trials=spec.get("max_failed_trials"),
            study_name=f"job-{job_id}",
            error=entry.error,
            shared=shared,
            fingerprint=fingerprint,
            created_at=entry.created_at,
            started_at=entry.started_at,
            finished_at=entry.finished_at,
        )
    )
    session.flush()
    _add_slots(session, job_id, entry)
    for trial in entry.trials:
        _add_trial(session, job_id, trial)
    session.flush()


def _add_slots(session: Session, job_id: uuid.UUID, entry: HistoryJob) -> None:
    """One terminal slot per unit of budget, as the job's last attempts left them."""
    last: dict[int, HistoryTrial] = {}
    for trial in sorted(entry.trials, key=lambda t: t.attempt):
        last[trial.slot] = trial
    max_attempts = get_settings().TRIAL_MAX_ATTEMPTS
    session.add_all(
        TrialSlot(
            job_id=job_id,
            slot=slot,
            status=_SLOT_STATUS[TrialState(last[slot].state)] if slot in last else "cancelled",
            attempts=last[slot].attempt if slot in last else 0,
            max_attempts=max(max_attempts, last[slot].attempt if slot in last else 0),
        )
        for slot in range(entry.n_slots)
    )
    session.flush()


def _add_trial(session: Session, job_id: uuid.UUID, trial: HistoryTrial) -> None:
    run = TrialRun(
        job_id=job_id,
        slot=trial.slot,
        attempt=trial.attempt,
        number=trial.number,
        state=trial.state,
        optimizer=trial.optimizer,
        params=trial.params,
        hyperparameters=trial.hyperparameters,
        value=decode_float(trial.value, trial.value_kind),
        failure_reason=trial.failure_reason,
        diverged=trial.diverged,
        seed=trial.seed,
        device=trial.device,
        n_parameters=trial.n_parameters,
        versions=trial.versions,
        source=trial.source,
        started_at=trial.started_at,
        finished_at=trial.finished_at,
    )
    session.add(run)
    session.flush()
    session.add_all(
        CurvePoint(trial_id=run.id, **point.model_dump(mode="python")) for point in trial.curve
    )


# -- files -------------------------------------------------------------------------------
def write_file(history: HistoryFile, path: Path) -> int:
    """Write JSON, gzip-compressed when the name ends in ``.gz``; returns the bytes written."""
    data = history.model_dump_json().encode()
    if path.suffix == ".gz":
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:  # reproducible bytes
            gz.write(data)
        data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def read_file(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> HistoryFile:
    """Parse and validate a history file (JSON, or gzip-compressed JSON)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HistoryFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(raw, max_bytes=max_bytes, name=str(path))


def parse(raw: bytes, *, max_bytes: int = MAX_FILE_BYTES, name: str = "history") -> HistoryFile:
    if raw[:2] == _GZIP_MAGIC:
        raw = _gunzip(raw, max_bytes, name)
    elif len(raw) > max_bytes:
        raise HistoryFileError(f"{name}: larger than {max_bytes} bytes")
    try:
        return HistoryFile.model_validate_json(raw)
    except ValidationError as exc:
        raise HistoryFileError(_describe(name, exc)) from None


def _gunzip(raw: bytes, max_bytes: int, name: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            data = gz.read(max_bytes + 1)
    except (OSError, EOFError) as exc:
        raise HistoryFileError(f"{name}: not a valid gzip file ({exc})") from None
    if len(data) > max_bytes:
        raise HistoryFileError(f"{name}: more than {max_bytes} bytes once decompressed")
    return data


def _describe(name: str, exc: ValidationError, limit: int = 5) -> str:
    """The first few errors, each with the path to the offending field."""
    errors = exc.errors(include_url=False)
    lines = [
        f"  {'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in errors[:limit]
    ]
    more = f"\n  ... and {len(errors) - limit} more" if len(errors) > limit else ""
    return f"{name} is not a valid {FORMAT} v{VERSION} file:\n" + "\n".join(lines) + more


def as_dict(history: HistoryFile) -> dict[str, Any]:
    """The file's content without ``exported_at``: what round-trip equality compares."""
    return history.model_dump(mode="json", exclude={"exported_at"})


__all__ = [
    "MAX_FILE_BYTES",
    "HistoryFileError",
    "ImportResult",
    "as_dict",
    "export_history",
    "import_history",
    "parse",
    "read_file",
    "write_file",
]
