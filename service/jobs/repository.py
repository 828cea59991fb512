"""Queries on jobs, always scoped to the caller's tenant (another tenant's job is a 404)."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from service.auth import AuthSubject
from service.models import Job


def readable(subject: AuthSubject) -> Select[tuple[Job]]:
    return select(Job).where(Job.tenant_id == subject.tenant_id)


def get(session: Session, subject: AuthSubject, job_id: uuid.UUID) -> Job | None:
    return session.scalar(readable(subject).where(Job.id == job_id))


def get_by_idempotency_key(session: Session, subject: AuthSubject, key: str) -> Job | None:
    return session.scalar(readable(subject).where(Job.idempotency_key == key))


def list_page(
    session: Session, subject: AuthSubject, *, limit: int, offset: int, status: str | None
) -> tuple[list[Job], int]:
    stmt = readable(subject)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(Job.created_at.desc()).limit(limit).offset(offset))
    return list(rows), total
