"""Service errors carry their HTTP status; every error body has FastAPI's 422 shape.

422 is for payload validation (including semantic checks against the registries,
which name the field); 404 hides other tenants' rows; 409 is a state conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api_schemas import ErrorBody


class ServiceError(Exception):
    status_code = 400
    error_type = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, msg: str, loc: Sequence[str | int] = ()) -> None:
        super().__init__(msg)
        self.msg = msg
        self.loc = list(loc)

    def body(self) -> dict[str, Any]:
        return {"detail": [{"loc": self.loc, "msg": self.msg, "type": self.error_type}]}


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    status_code = 403
    error_type = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    error_type = "not_found"


class Conflict(ServiceError):
    status_code = 409
    error_type = "conflict"


class InvalidField(ServiceError):
    """A well-formed request that names something that does not exist (unknown model...)."""

    status_code = 422
    error_type = "value_error"


class PayloadTooLarge(ServiceError):
    status_code = 413
    error_type = "payload_too_large"


def install_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    async def handle_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # loc, msg and type only: FastAPI's default echoes each ``input``, and an
        # echoed NaN cannot be encoded as JSON (the 422 would become a 500)
        body = ErrorBody.from_errors(exc.errors())
        return JSONResponse(body.model_dump(mode="json"), status_code=422)

    app.add_exception_handler(ServiceError, handle)
    app.add_exception_handler(RequestValidationError, handle_validation)
