"""Shared fixtures: settings per test, databases built by Alembic (never create_all).

PostgreSQL and Redis are real servers on 127.0.0.1. Without them a laptop skips
those tests with the reason; under ``CI=true`` their absence is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import make_key

PG_ADMIN_URL = os.environ.get("OPTSERVE_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("OPTSERVE_TEST_REDIS", "redis://127.0.0.1:6379")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


def apply_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    from service.broker import get_celery
    from service.config import get_settings
    from service.db import dispose_engines

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    get_celery.cache_clear()
    dispose_engines()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def sqlite_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> Iterator[dict[str, str]]:
    """Embedded default in a temp folder, schema built by the migrations."""
    from service.migrate import upgrade

    env = {"OPTSERVE_DATA_DIR": str(data_dir), "OPTSERVE_ENV": "testing"}
    apply_env(monkeypatch, env)
    upgrade()
    yield env
    apply_env(monkeypatch, {})


def create_pg_database() -> str:
    """A fresh database per test; returns its SQLAlchemy URL."""
    from sqlalchemy import create_engine, text

    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"optserve_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    yield url
    from service.db import dispose_engines

    dispose_engines()
    drop_pg_database(url)


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return f"{REDIS_URL}/{int(os.environ.get('OPTSERVE_TEST_REDIS_DB', '13'))}"


@pytest.fixture
def client(sqlite_env: dict[str, str]) -> Iterator[TestClient]:
    from service.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def api_key(sqlite_env: dict[str, str]) -> str:
    return make_key("tenant-a")


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}
