"""Operations: ``GET /metrics`` in Prometheus format and structured request logs.

``/metrics`` takes no API key, like ``/v1/health``: Prometheus scrapes it without
credentials, and it exposes aggregate counts only (no job id, tenant or name; see
``service.metrics``). Keep it on an internal network, or deny ``/metrics`` at the
reverse proxy when the API port is public.

Each request gets a request id (the caller's ``X-Request-ID`` when it is sane, a new
one otherwise, echoed in the response) and, under ``/v1/jobs/{id}/...``, the job id
(and trial number) bound to every log line written while it is served, ending with
one ``request`` line: method, path, status, duration.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs
from service.config import get_settings
from service.db import session_factory
from service.metrics import DatabaseCollector

router = APIRouter(tags=["operations"])
access_log = logging.getLogger("optserve.access")

_JOB_PATH = re.compile(r"^/v1/jobs/([0-9a-fA-F-]{32,36})(?:/trials/(\d+))?(?:/|$)")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus text format, read from the database at each scrape (no API key)."""
    registry = CollectorRegistry()
    registry.register(
        DatabaseCollector(session_factory(), grace_s=get_settings().HEARTBEAT_GRACE_S)
    )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    """Configure this process's logs and log every request with its context."""
    logs.configure("api")
    app.add_middleware(RequestContext)


def path_fields(path: str) -> dict[str, object]:
    """The job id (and trial number) a request path is about, as log fields."""
    match = _JOB_PATH.match(path)
    if match is None:
        return {}
    try:
        job_id = uuid.UUID(match.group(1))
    except ValueError:
        return {}
    trial = match.group(2)
    return {"job_id": str(job_id), "trial": int(trial) if trial else None}


class RequestContext:
    """Pure ASGI (streams such as SSE pass through untouched): bind, serve, log once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        status = 500  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        started = time.perf_counter()
        with logs.bind(request_id=request_id, **path_fields(scope["path"])):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return uuid.uuid4().hex
