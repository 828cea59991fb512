"""``create_app()``: routers, error handlers and the request-size limit."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

import service
from service.catalog.endpoints import router as catalog_router
from service.config import get_settings
from service.datasets.endpoints import router as datasets_router
from service.errors import PayloadTooLarge, install_handlers
from service.events.endpoints import router as events_router
from service.health import router as health_router
from service.jobs.endpoints import router as jobs_router
from service.observability import install as install_observability
from service.observability import router as operations_router
from service.recommend.endpoints import router as recommend_router
from service.web.routes import mount as mount_web
from service.web.routes import router as web_router

# multipart framing around an uploaded file: boundaries, part headers, form fields
UPLOAD_FRAMING_BYTES = 64 * 1024


class BodySizeLimit:
    """Refuse bodies over the limit before parsing them (413, not a memory spike).

    JSON requests get ``MAX_BODY_BYTES``; dataset uploads (``POST /v1/datasets``) get
    ``MAX_UPLOAD_BYTES`` plus the multipart framing.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes + UPLOAD_FRAMING_BYTES

    def _limit(self, scope: Scope) -> int:
        is_upload = scope.get("method") == "POST" and scope.get("path") == "/v1/datasets"
        return self.upload_bytes if is_upload else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(limit, scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:  # type: ignore[type-arg]
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message  # type: ignore[no-any-return]

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(limit, scope, receive, send)

    @staticmethod
    async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"request body over {limit} bytes", ("body",))
        await JSONResponse(error.body(), status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="optserve",
        version=service.__version__,
        description="Which optimizer, with which hyperparameters, for this model and data.",
    )
    install_handlers(app)
    for router in (
        jobs_router,
        events_router,
        catalog_router,
        health_router,
        datasets_router,
        recommend_router,
        operations_router,
        web_router,
    ):
        app.include_router(router)
    mount_web(app)
    install_observability(app)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.MAX_BODY_BYTES, upload_bytes=settings.MAX_UPLOAD_BYTES
    )
    return app
