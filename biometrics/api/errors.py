"""Every error leaves as ``{"error": code, "detail": text}`` with a fitting status.

A database that cannot be reached is 503 ``database_unavailable`` with ``Retry-After``,
answered like any other error, so the client's keep-alive connection stays open (an error
left to the server's last-resort handler would close it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from biometrics.errors import BiometricsError, Forbidden, Unauthenticated
from biometrics.store.database import DatabaseUnavailable, is_unavailable

WWW_AUTHENTICATE = 'Bearer realm="biometrics"'

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status_code: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status_code)


async def biometrics_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BiometricsError)
    log = logger.error if exc.status_code >= 500 else logger.warning
    log(
        "request refused",
        extra={"path": request.url.path, "error": exc.code, "detail": exc.detail},
    )
    response = error_response(exc.status_code, exc.code, exc.detail)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, Unauthenticated | Forbidden):
        response.headers["WWW-Authenticate"] = (
            WWW_AUTHENTICATE
            if isinstance(exc, Unauthenticated)
            else f'{WWW_AUTHENTICATE}, error="insufficient_scope"'
        )
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(_allowed(request))
    return response


def _allowed(request: Request) -> list[str]:
    """The methods of the path the router chose (the first route template that matched):
    each route has one method, and the router's own 405 names only that route's."""
    routes = [route for route in request.app.routes if isinstance(route, Route)]
    chosen = next(
        (route.path for route in routes if route.path_regex.match(request.url.path)), None
    )
    methods = {m for route in routes if route.path == chosen for m in route.methods or ()}
    return sorted(methods)


async def database_error(request: Request, exc: Exception) -> Response:
    if is_unavailable(exc):
        return await biometrics_error(request, DatabaseUnavailable())
    return await unexpected_error(request, exc)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error", extra={"path": request.url.path})
    return error_response(500, "internal_error", "the server failed; see its log")


Handler = Callable[[Request, Exception], Awaitable[Response]]


def exception_handlers(on_database_error: Callable[[], None]) -> dict[type[Exception], Handler]:
    """The application's handlers; ``on_database_error`` is told of each request that a
    database error ended, whether the store raised it or a route found the database away."""

    async def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, DatabaseUnavailable):
            on_database_error()
        return await biometrics_error(request, exc)

    async def failed(request: Request, exc: Exception) -> Response:
        on_database_error()
        return await database_error(request, exc)

    return {
        BiometricsError: refused,
        HTTPException: http_error,
        sa_exc.DBAPIError: failed,
        sa_exc.TimeoutError: failed,
        Exception: unexpected_error,
    }
