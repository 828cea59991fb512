"""Uploaded datasets: parse once, store content-addressed, own by tenant, resolve for jobs.

The upload is parsed into canonical numeric arrays (``parsing``), which are stored as
an uncompressed ``.npz`` named by the sha256 of those arrays under
``DATA_DIR/datasets/``: the same data uploaded twice (by anyone) is stored once, and
the worker can trust what it loads. The file is written before the row is committed;
a failed commit leaves an unreferenced file that the next identical upload reuses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from api_schemas import DatasetRead
from api_schemas.datasets import DatasetUploadRead
from service.auth import AuthSubject
from service.config import get_settings
from service.datasets import parsing
from service.datasets import repository as datasets_repo
from service.errors import InvalidField, NotFound, PayloadTooLarge, ServiceError
from service.models import UploadedDataset
from service.models.dataset import blob_path
from workers import catalog


class UnsupportedMediaType(ServiceError):
    status_code = 415
    error_type = "unsupported_media_type"


def upload(
    session: Session,
    subject: AuthSubject,
    *,
    data: bytes,
    filename: str,
    target: str | None,
    name: str | None,
    task_type: str | None,
) -> UploadedDataset:
    """Parse, store and record one upload; 413/415/422 name the field and the reason."""
    limits = parsing.UploadLimits.from_settings(get_settings())
    try:
        fmt = parsing.detect_format(filename)  # first: a .pkl is refused unread
        parsed = parsing.parse(data, fmt, target=target, task_type=task_type, limits=limits)
    except parsing.UploadRejected as exc:
        raise _http_error(exc) from None
    arrays = parsed.arrays()
    sha = _content_hash(arrays)
    _store(arrays, blob_path(get_settings().DATA_DIR, sha))
    meta = parsed.meta() | {"upload_sha256": hashlib.sha256(data).hexdigest()}
    row = UploadedDataset(
        tenant_id=subject.tenant_id,
        name=(name or Path(filename).stem)[:128],
        filename=Path(filename).name[:256],
        format=fmt,
        sha256=sha,
        size_bytes=len(data),
        target=target if fmt != "npz" else None,
        task_type=parsed.task_type,
        modality=meta["modality"],
        n_examples=meta["n_examples"],
        n_features=meta["n_features"],
        n_classes=meta["n_classes"],
        meta=meta,
    )
    return datasets_repo.add(session, row)


def get(session: Session, subject: AuthSubject, dataset_id: uuid.UUID) -> UploadedDataset:
    row = datasets_repo.get(session, subject, dataset_id)
    if row is None:
        raise NotFound("dataset not found", ("path", "dataset_id"))
    return row


def delete(session: Session, subject: AuthSubject, dataset_id: uuid.UUID) -> None:
    """Forget the upload; its file goes when no other upload shares the content."""
    row = get(session, subject, dataset_id)
    sha = row.sha256
    datasets_repo.delete(session, row)
    if datasets_repo.count_by_sha(session, sha) == 0:
        blob_path(get_settings().DATA_DIR, sha).unlink(missing_ok=True)


def to_read(row: UploadedDataset) -> DatasetUploadRead:
    return DatasetUploadRead(
        id=row.id,
        name=row.name,
        filename=row.filename,
        format=row.format,  # type: ignore[arg-type]
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        target=row.target,
        task_type=row.task_type,  # type: ignore[arg-type]
        modality=row.modality,  # type: ignore[arg-type]
        n_examples=row.n_examples,
        n_features=row.n_features,
        n_classes=row.n_classes,
        metrics=catalog.metrics_for(row.task_type),
        meta=row.meta,
        # SQLite hands back naive datetimes; every timestamp we store is UTC
        created_at=row.created_at.replace(tzinfo=row.created_at.tzinfo or dt.UTC),
    )


def upload_reads(session: Session, subject: AuthSubject) -> list[DatasetRead]:
    """The tenant's uploads in the catalogue's shape, for ``GET /v1/datasets``.

    ``name`` is the id, because that is what a job's ``task.dataset.name`` takes.
    """
    return [
        DatasetRead(
            name=str(row.id),
            description=row.spec().description,
            task_type=row.task_type,  # type: ignore[arg-type]
            n_examples=row.n_examples,
            n_features=row.n_features,
            n_classes=row.n_classes,
            metrics=catalog.metrics_for(row.task_type),
            source="upload",
            meta={**row.meta, "id": str(row.id), "display_name": row.name},
        )
        for row in datasets_repo.list_all(session, subject)
    ]


def resolve_dataset_for_job(
    session: Session, subject: AuthSubject, name: str
) -> catalog.DatasetSpec:
    """The spec a job's ``task.dataset.name`` refers to: a built-in, or the caller's upload.

    Raises ``CatalogError`` (``field=None``, like an unknown built-in) when ``name`` is
    neither; another tenant's upload is as unknown as a made-up name.
    """
    if name in catalog.DATASETS:
        return catalog.get_dataset_spec(name)
    try:
        dataset_id = uuid.UUID(name)
    except (ValueError, TypeError, AttributeError):
        return catalog.get_dataset_spec(name)  # raises, naming the built-ins
    row = datasets_repo.get(session, subject, dataset_id)
    if row is None:
        raise catalog.CatalogError(
            f"Unknown dataset {name!r}: no built-in dataset has that name and none of "
            "your uploads has that id"
        )
    return row.spec()


def _http_error(exc: parsing.UploadRejected) -> ServiceError:
    loc = ("body", exc.field)
    if exc.status == 413:
        return PayloadTooLarge(exc.reason, loc)
    if exc.status == 415:
        return UnsupportedMediaType(exc.reason, loc)
    return InvalidField(exc.reason, loc)


def _content_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over each array's name, dtype, shape and bytes: equal data, equal name."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _store(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write once, atomically (a concurrent reader never sees half a file)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)
