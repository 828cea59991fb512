"""``GET /v1/health``: is the database reachable, is the broker reachable."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

import service
from api_schemas import HealthRead
from service.broker import broker_reachable
from service.db import get_engine

router = APIRouter(prefix="/v1", tags=["health"])


def database_reachable() -> bool:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/health")
def health() -> HealthRead:
    """No auth: load balancers and ``docker compose`` health checks call it."""
    db, broker = database_reachable(), broker_reachable()
    return HealthRead(
        status="ok" if db and broker else "degraded",
        database=db,
        broker=broker,
        version=service.__version__,
    )
