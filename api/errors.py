"""Every error leaves the API as ``{"error": {"code": ..., "message": ...}}``.

Handlers installed by :func:`install_error_handlers` turn our own
:class:`ApiError`, FastAPI's validation errors, Starlette's HTTP errors (404
for unknown paths, 405), store failures (503) and anything unexpected (500)
into that one shape, so clients never parse HTML or a bare string. Store
failures and unexpected errors are logged in full and answered with a fixed
message: no body ever carries SQL, file paths, hosts or a stack trace.
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from riffle.config.errors import RiffleError
from riffle.sinks.errors import SinkError

log = structlog.get_logger(__name__)

_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    422: "invalid_request",
}


class ApiError(RiffleError):
    """A request the API refuses on purpose, with its status and a stable code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """A JSON error response in the API's one shape; ``extra`` adds top-level fields."""
    body = {"error": {"code": code, "message": message}, **extra}
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error the app can raise to a JSON body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(SinkError, _sink_error)
    app.add_exception_handler(redis.RedisError, _sink_error)
    app.add_exception_handler(Exception, _unexpected)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    response = error_response(exc.status, exc.code, exc.message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return error_response(422, "invalid_request", problems or "invalid request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


STORE_RETRY_AFTER_SECONDS = 5


async def _sink_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store_unavailable", path=request.url.path, error=str(exc))
    response = error_response(
        503,
        "store_unavailable",
        "a store (Redis or the warehouse) did not answer; retry later "
        "(the server log has the details)",
    )
    response.headers["Retry-After"] = str(STORE_RETRY_AFTER_SECONDS)
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", path=request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; the server log has the details")
