"""Operations: ``/metrics`` in Prometheus format and structured JSON logs."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

router = APIRouter(tags=["operations"])


def install(app: FastAPI) -> None:
    """Hook what is not a plain route (request logging) into the app."""
