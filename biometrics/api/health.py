"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from biometrics.services import services_of

logger = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services = services_of(request)
    body: dict[str, object] = {
        "model": services.worker.identity.as_dict(),
        "scoring": services.scorer.describe(),
    }
    try:
        await run_in_threadpool(services.database.ping)
    except Exception as error:
        logger.warning("database unreachable", extra={"error": str(error)})
        return JSONResponse({**body, "status": "unavailable", "database": "unreachable"}, 503)
    return JSONResponse({**body, "status": "ready", "database": "ok"})
