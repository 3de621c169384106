"""The audit trail over REST: who a request is (:func:`origin_of`), the rows its acts
write (:class:`Auditor`), and ``GET /v1/audit`` (admin only) to read them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route

from biometrics.api import schemas
from biometrics.api.openapi import Operation, Reply
from biometrics.api.request_id import request_id_of
from biometrics.errors import BiometricsError
from biometrics.statuses import Role
from biometrics.store.audit import ANONYMOUS, AuditLog, AuditQuery, Origin
from biometrics.store.database import DatabaseUnavailable, is_unavailable

if TYPE_CHECKING:
    from biometrics.api.auth import Guard


def origin_of(connection: HTTPConnection, actor: str | None = None) -> Origin:
    """The request's (or socket's) origin: ``actor``, else the key the guard let in, else
    ``anonymous``; its request id; the client's address."""
    if actor is None:
        key = getattr(connection.state, "api_key", None)
        actor = ANONYMOUS if key is None else key.key_id
    request_id = getattr(connection.state, "request_id", None) or request_id_of(connection.headers)
    client = connection.client
    return Origin(actor, request_id, None if client is None else client.host)


class Auditor:
    """Writes the rows of a request's acts, from a worker thread."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    async def record(
        self,
        origin: Origin,
        action: str,
        subject: str | None,
        outcome: str,
        *,
        call_id: str | None = None,
        participant_raw_id: str | None = None,
    ) -> None:
        await run_in_threadpool(
            lambda: self.log.record(
                origin,
                action,
                subject,
                outcome,
                call_id=call_id,
                participant_raw_id=participant_raw_id,
            )
        )

    @contextlib.asynccontextmanager
    async def act(
        self,
        request: Request,
        action: str,
        subject: str | None,
        *,
        call_id: str | None = None,
        participant_raw_id: str | None = None,
    ) -> AsyncIterator[list[str]]:
        """One row for the block: ``ok`` (or what the block puts in the yielded list), or
        the code of the error it raised (``database_unavailable`` for an unreachable
        database, ``internal_error`` for anything else not of the service)."""
        outcome = ["ok"]
        where = {"call_id": call_id, "participant_raw_id": participant_raw_id}
        try:
            yield outcome
        except Exception as error:
            code = _outcome_of(error)
            await self.record(origin_of(request), action, subject, code, **where)
            raise
        await self.record(origin_of(request), action, subject, outcome[-1], **where)


LIST = Operation(
    "listAudit",
    "Read the audit trail, oldest first, a page at a time (admin keys only)",
    "audit",
    [Reply(200, "a page of rows; next_cursor reads the next", schemas.AuditPage)],
    {400: ("invalid_request",)},
    query=schemas.AuditFilter,
)


class AuditRoutes:
    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def routes(self, guard: Guard) -> list[Route]:
        return [guard.route("/v1/audit", Role.ADMIN, self.list_audit, "GET", LIST)]

    async def list_audit(self, request: Request) -> Response:
        """Rows oldest first, ``limit`` a page, ``next_cursor`` to the next page; filtered by
        ``subject``, ``action``, and ``since`` (inclusive) / ``until`` (exclusive)."""
        asked = schemas.query(request, schemas.AuditFilter)
        query = AuditQuery(
            subject=asked.subject or None,
            action=asked.action or None,
            since=asked.since,
            until=asked.until,
            after=schemas.after(asked.cursor),
            limit=asked.limit + 1,
        )
        rows = await run_in_threadpool(self._log.query, query)
        shown = rows[: asked.limit]
        page = {
            "entries": [row.as_dict() for row in shown],
            "next_cursor": str(shown[-1].id) if len(rows) > asked.limit else None,
        }
        return schemas.respond(schemas.AuditPage, page)


def _outcome_of(error: Exception) -> str:
    if isinstance(error, BiometricsError):
        return error.code
    return DatabaseUnavailable.code if is_unavailable(error) else "internal_error"
