"""Alembic environment for optserve's tables only.

Our version table is ``optserve_alembic_version``: Optuna keeps the default
``alembic_version`` for its own schema, and the two must never collide. Tables that
are not ours (Optuna's ``studies``, ``trials`` ... when a database is shared) are
ignored by autogenerate, so ``alembic check`` never proposes to drop them.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import pool

import service.models  # noqa: F401  (registers the tables on Base.metadata)
from service.config import get_settings
from service.db import Base, make_engine

VERSION_TABLE = "optserve_alembic_version"
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _url() -> str:
    return context.config.attributes.get("url") or get_settings().database_url


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        render_as_batch=_url().startswith("sqlite"),
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
