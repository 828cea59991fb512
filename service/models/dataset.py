"""An uploaded dataset: its owner, where its arrays live, and its meta-features.

The arrays themselves are not in the database: the upload is parsed once into a
canonical ``.npz`` (numeric arrays only) stored under ``DATA_DIR/datasets/`` by the
sha256 of the uploaded bytes, so the same file uploaded twice is stored once. The
meta-features are computed at upload and kept here, so listing, job validation and
recommendations never reload the data.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import timestamp, uuid_pk
from workers.catalog import DatasetSpec


def blob_path(data_dir: Path, sha256: str) -> Path:
    """Where the canonical arrays of content ``sha256`` live; service and worker agree here."""
    return data_dir / "datasets" / f"{sha256}.npz"


class UploadedDataset(Base):
    __tablename__ = "uploaded_datasets"
    __table_args__ = (
        CheckConstraint("task_type IN ('classification','regression')", name="task_type_enum"),
        CheckConstraint("modality IN ('tabular','image')", name="modality_enum"),
        CheckConstraint("n_examples > 0", name="n_examples_positive"),
        Index("ix_uploaded_datasets_tenant_created", "tenant_id", "created_at"),
        Index("ix_uploaded_datasets_sha256", "sha256"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    filename: Mapped[str] = mapped_column(String(256))
    format: Mapped[str] = mapped_column(String(16))  # npz | csv | parquet
    sha256: Mapped[str] = mapped_column(String(64))  # of the canonical arrays stored
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    target: Mapped[str | None] = mapped_column(String(256))
    task_type: Mapped[str] = mapped_column(String(32))
    modality: Mapped[str] = mapped_column(String(16))
    n_examples: Mapped[int] = mapped_column(Integer)
    n_features: Mapped[int] = mapped_column(Integer)
    n_classes: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = timestamp(nullable=False, default_now=True)

    def spec(self) -> DatasetSpec:
        """The catalogue's view of this upload: what jobs and the worker validate against."""
        balance = self.meta.get("class_balance")
        shape = self.meta.get("input_shape")
        return DatasetSpec(
            name=str(self.id),
            description=f"Uploaded dataset {self.name!r} ({self.format})",
            loader_path="workers.training.uploads:load_arrays",
            task_type=self.task_type,  # type: ignore[arg-type]
            modality=self.modality,  # type: ignore[arg-type]
            n_examples=self.n_examples,
            n_features=self.n_features,
            n_classes=self.n_classes,
            class_balance=tuple(balance) if balance else None,
            input_shape=tuple(shape) if shape else None,
            source="upload",
        )
