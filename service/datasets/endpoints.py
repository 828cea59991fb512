"""``/v1/datasets``: upload (multipart), read and delete a tenant's datasets.

``GET /v1/datasets`` (built-ins and the tenant's uploads) is served by the catalogue
router, which calls ``service.datasets.service.upload_reads``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from api_schemas.datasets import DatasetUploadRead
from service.auth import Authenticated
from service.config import get_settings
from service.datasets import service as dataset_service
from service.deps import SessionDep
from service.errors import PayloadTooLarge

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED)
def upload_dataset(
    session: SessionDep,
    subject: Authenticated,
    file: Annotated[UploadFile, File(description=".npz (X, y[, X_val, y_val]), .csv or .parquet")],
    target: Annotated[str | None, Form(max_length=256)] = None,
    name: Annotated[str | None, Form(max_length=128)] = None,
    task_type: Annotated[Literal["classification", "regression"] | None, Form()] = None,
) -> DatasetUploadRead:
    """Parse the file as data (never unpickled), store it and its meta-features."""
    subject.require("jobs:write")
    limit = get_settings().MAX_UPLOAD_BYTES
    data = file.file.read(limit + 1)  # bounded: a huge upload is not read into memory
    if len(data) > limit:
        raise PayloadTooLarge(f"file is over the {limit} byte limit", ("body", "file"))
    row = dataset_service.upload(
        session,
        subject,
        data=data,
        filename=file.filename or "",
        target=target,
        name=name,
        task_type=task_type,
    )
    return dataset_service.to_read(row)


@router.get("/{dataset_id}")
def read_dataset(
    dataset_id: uuid.UUID, session: SessionDep, subject: Authenticated
) -> DatasetUploadRead:
    """One of the caller's uploads; another tenant's is a 404."""
    return dataset_service.to_read(dataset_service.get(session, subject, dataset_id))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(dataset_id: uuid.UUID, session: SessionDep, subject: Authenticated) -> Response:
    """Delete the upload (jobs already using it will fail their remaining trials)."""
    subject.require("jobs:write")
    dataset_service.delete(session, subject, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
