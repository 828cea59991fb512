"""Column helpers shared by the models."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, Uuid
from sqlalchemy.orm import mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def uuid_pk():  # type: ignore[no-untyped-def]
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


def timestamp(nullable: bool = True, default_now: bool = False):  # type: ignore[no-untyped-def]
    return mapped_column(
        DateTime(timezone=True), nullable=nullable, default=utcnow if default_now else None
    )
