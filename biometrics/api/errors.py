"""Every error leaves as ``{"error": code, "detail": text}`` with a fitting status."""

from __future__ import annotations

import logging
import math

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from biometrics.errors import BiometricsError, Forbidden, Unauthenticated

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
    return error_response(exc.status_code, code, str(exc.detail))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error", extra={"path": request.url.path})
    return error_response(500, "internal_error", "the server failed; see its log")


exception_handlers = {
    BiometricsError: biometrics_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
