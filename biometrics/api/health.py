"""Liveness and readiness probes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from biometrics.embedding import InferenceBatcher, ModelIdentity
from biometrics.scoring.scorer import Scorer
from biometrics.store import Database
from biometrics.store.spool import Spool

logger = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class Readiness:
    """``/readyz``: the model that runs, how it scores, whether API keys are required,
    whether the database answers, the rows waiting for it after an outage (``spool``:
    pending now, written late, dropped), the inference queue's counters and, with several
    replicas, whether Redis answers (``redis``: a replica without it is not ready). Open to
    all, so it names no key and no secret."""

    def __init__(
        self,
        database: Database,
        model: ModelIdentity,
        scorer: Scorer,
        auth_warning: str | None = None,
        spool: Spool | None = None,
        inference: InferenceBatcher | None = None,
        redis_ping: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._database = database
        self._redis_ping = redis_ping
        self._spool = spool
        self._inference = inference
        self._body: dict[str, object] = {
            "model": model.as_dict(),
            "scoring": scorer.describe(),
            "auth": "on" if auth_warning is None else "off",
        }
        if auth_warning is not None:
            self._body["warnings"] = [auth_warning]

    async def readyz(self, request: Request) -> Response:
        body = dict(self._body)
        if self._spool is not None:
            body["spool"] = self._spool.counts().as_dict()
        if self._inference is not None:
            body["inference"] = self._inference.counters().as_dict()
        try:
            await run_in_threadpool(self._database.ping)
        except Exception as error:
            logger.warning(
                "database unreachable", extra={"error": str(error), "spool": body.get("spool")}
            )
            return JSONResponse({**body, "status": "unavailable", "database": "unreachable"}, 503)
        body["database"] = "ok"
        if self._redis_ping is not None:
            if not await self._redis_ping():
                return JSONResponse({**body, "status": "unavailable", "redis": "unreachable"}, 503)
            body["redis"] = "ok"
        return JSONResponse({**body, "status": "ready"})
