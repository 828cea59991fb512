"""Tenants and their API keys. Only an HMAC of each key is stored."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base
from service.models._types import timestamp, uuid_pk


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = timestamp(nullable=False, default_now=True)

    keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant", lazy="raise")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128), default="default")
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings, not secret
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(128), default="jobs:read jobs:write")
    created_at: Mapped[dt.datetime] = timestamp(nullable=False, default_now=True)
    revoked_at: Mapped[dt.datetime | None] = timestamp()

    tenant: Mapped[Tenant] = relationship(back_populates="keys", lazy="raise")
