"""``GET /v1/jobs/{id}/events``: the job's events as Server-Sent Events."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/jobs", tags=["events"])
