"""Dashboard pages and their static assets."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

router = APIRouter(include_in_schema=False)


def mount(app: FastAPI) -> None:
    """Mount what is not a plain route (static files, Optuna's WSGI dashboard)."""
