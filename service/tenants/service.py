"""Tenants and API keys, for the CLI and the bootstrap of a fresh installation."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.keys import display_prefix, generate_key, hash_key
from service.config import get_settings
from service.models import ApiKey, Tenant


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def add_key(
    session: Session,
    tenant: Tenant,
    *,
    key: str | None = None,
    scopes: str = "jobs:read jobs:write",
) -> str:
    """Store the hash of a (new or given) key and return the key: shown once, never stored."""
    key = key or generate_key()
    digest = hash_key(key, get_settings().SECRET_KEY)
    if session.scalar(select(ApiKey).where(ApiKey.key_hash == digest)) is None:
        session.add(
            ApiKey(tenant_id=tenant.id, prefix=display_prefix(key), key_hash=digest, scopes=scopes)
        )
        session.flush()
    return key


def bootstrap_key(session: Session, key_file: Path) -> tuple[str, bool]:
    """A working key for a newcomer: ``OPTSERVE_BOOTSTRAP_KEY``, or one made on first start.

    Returns the key and whether it was just created. The embedded default keeps it in
    the data folder (mode 600) so the CLI on the same machine finds it.
    """
    tenant = get_or_create_tenant(session, "default")
    given = get_settings().BOOTSTRAP_KEY
    if given:
        return add_key(session, tenant, key=given), False
    if key_file.exists():
        return key_file.read_text().strip(), False
    key = add_key(session, tenant)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key, True
