"""Queries on uploaded datasets, scoped to the caller's tenant (another's is a 404)."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from service.auth import AuthSubject
from service.models import UploadedDataset


def readable(subject: AuthSubject) -> Select[tuple[UploadedDataset]]:
    return select(UploadedDataset).where(UploadedDataset.tenant_id == subject.tenant_id)


def get(session: Session, subject: AuthSubject, dataset_id: uuid.UUID) -> UploadedDataset | None:
    return session.scalar(readable(subject).where(UploadedDataset.id == dataset_id))


def list_all(session: Session, subject: AuthSubject) -> list[UploadedDataset]:
    """The tenant's uploads, newest first (a tenant holds few; no pagination yet)."""
    return list(session.scalars(readable(subject).order_by(UploadedDataset.created_at.desc())))


def add(session: Session, row: UploadedDataset) -> UploadedDataset:
    session.add(row)
    session.flush()
    return row


def delete(session: Session, row: UploadedDataset) -> None:
    session.delete(row)
    session.flush()


def count_by_sha(session: Session, sha256: str) -> int:
    """How many uploads (of any tenant) share this stored content."""
    stmt = select(func.count()).where(UploadedDataset.sha256 == sha256)
    return int(session.scalar(stmt) or 0)
