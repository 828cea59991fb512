"""``POST /v1/recommendations``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])
