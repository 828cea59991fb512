"""Optuna's storage, kept apart from our tables.

PostgreSQL: Optuna's tables live in their own schema (``OPTSERVE_OPTUNA_SCHEMA``), so its
``alembic_version`` and generic names (``studies``, ``trials``) never meet ours.
SQLite: Optuna gets its own file. One study per job, named ``job-<uuid>``.
"""

from __future__ import annotations

import functools
import os

import optuna
import sqlalchemy.exc
from sqlalchemy import create_engine, text

from service.config import get_settings


def study_name(job_id: str) -> str:
    return f"job-{job_id}"


def _ensure_schema(url: str, schema: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine.dispose()


@functools.cache
def _storage_for_pid(_pid: int) -> optuna.storages.RDBStorage:
    settings = get_settings()
    url = settings.optuna_storage_url
    engine_kwargs: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        _ensure_schema(url, settings.OPTUNA_SCHEMA)
        engine_kwargs["connect_args"] = {"options": f"-csearch_path={settings.OPTUNA_SCHEMA}"}
    elif url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except sqlalchemy.exc.IntegrityError:
        # Two processes created Optuna's tables at once on a fresh database and this
        # one lost the race (CREATE TYPE ... already exists): they exist now.
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def init_storage() -> None:
    """Create or migrate Optuna's tables once, at deploy time (``optserve db upgrade``).

    Workers starting together against a fresh database would otherwise race to create
    them, and the loser's first trial would fail.
    """
    get_storage()


def get_storage() -> optuna.storages.RDBStorage:
    """One storage per process: a forked child must not reuse its parent's connections."""
    return _storage_for_pid(os.getpid())
