"""Responses of ``/v1/datasets`` for uploaded datasets.

The upload itself is a multipart form (``file``, ``target``, ``name``, ``task_type``),
validated by the service: its fields are not JSON, so there is no request model here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import Field

from api_schemas.common import Schema


class DatasetUploadRead(Schema):
    """An uploaded dataset. A job names it by ``id`` (``task.dataset.name``)."""

    id: uuid.UUID
    name: str
    filename: str
    format: Literal["npz", "csv", "parquet"]
    sha256: str
    size_bytes: int
    target: str | None = None
    task_type: Literal["classification", "regression"]
    modality: Literal["tabular", "image"]
    n_examples: int
    n_features: int
    n_classes: int | None = None
    metrics: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: dt.datetime


__all__ = ["DatasetUploadRead"]
