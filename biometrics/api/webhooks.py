"""Webhook dead letters over REST (admin only): read them, and send them again.

``GET /v1/webhooks/dead-letters`` lists the stored rows, oldest first, paged like
``GET /v1/audit``. ``POST /v1/webhooks/dead-letters/{id}/retry`` hands one back to the
sender with a fresh count of attempts (202: it is on its way, not yet delivered);
``POST /v1/webhooks/dead-letters/retry`` does so for every undelivered one (a page at a
time). A retry is sent only to a URL in ``BIOMETRICS_WEBHOOK_URLS`` now: a URL an operator
has removed may no longer be trusted with verdict data, so its letters stay readable here
and are refused with 409. Each retry leaves a ``webhook.retry`` audit row.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from biometrics.api.audit import Auditor, cursor_of, origin_of, page_size
from biometrics.api.auth import Guard
from biometrics.clock import isoformat, utcnow
from biometrics.errors import (
    BiometricsError,
    DeadLetterNotFound,
    DeadLetterNotRetryable,
    InvalidRequest,
)
from biometrics.events.webhooks import WebhookSender
from biometrics.statuses import Role
from biometrics.store.dead_letters import DeadLetter, DeadLetterQuery, DeadLetters

RETRY = "webhook.retry"
BASE = "/v1/webhooks/dead-letters"


class WebhookRoutes:
    def __init__(self, store: DeadLetters, sender: WebhookSender | None, auditor: Auditor) -> None:
        self._store = store
        self._sender = sender
        self._auditor = auditor

    def routes(self, guard: Guard) -> list[Route]:
        return [
            guard.route(BASE, Role.ADMIN, self.list_dead_letters, "GET"),
            guard.route(BASE + "/retry", Role.ADMIN, self.retry_all, "POST"),
            guard.route(BASE + "/{dead_letter_id}/retry", Role.ADMIN, self.retry_one, "POST"),
        ]

    async def list_dead_letters(self, request: Request) -> Response:
        """Rows oldest first, ``limit`` a page, ``next_cursor`` to the next page; filtered by
        ``url``, ``call_id`` and ``delivered`` (true or false)."""
        limit = page_size(request.query_params.get("limit"))
        rows = await run_in_threadpool(self._store.query, _query(request, limit + 1))
        shown = rows[:limit]
        body: dict[str, Any] = {
            "dead_letters": [row.as_dict() for row in shown],
            "next_cursor": str(shown[-1].id) if len(rows) > limit else None,
        }
        return JSONResponse(body)

    async def retry_one(self, request: Request) -> Response:
        """Send one dead letter again: 202 with its row (``retried_at`` set)."""
        raw = request.path_params["dead_letter_id"]
        letter = await run_in_threadpool(self._store.get, int(raw)) if raw.isdigit() else None
        call_id = None if letter is None else letter.call_id
        async with self._auditor.act(request, RETRY, raw, call_id=call_id):
            if letter is None:
                raise DeadLetterNotFound(f"no webhook dead letter has the id {raw!r}")
            retried = await self._retry(letter)
        return JSONResponse(retried.as_dict(), status_code=202)

    async def retry_all(self, request: Request) -> Response:
        """Send again every undelivered dead letter (``limit`` of them, oldest first,
        filtered as the list): 202 with those handed to the sender and those refused."""
        limit = page_size(request.query_params.get("limit"))
        query = _query(request, limit)
        if query.delivered:
            raise InvalidRequest("delivered dead letters are not sent again")
        undelivered = dataclasses.replace(query, delivered=False)
        letters = await run_in_threadpool(self._store.query, undelivered)
        retried, refused = [], []
        origin = origin_of(request)
        for letter in letters:
            try:
                retried.append((await self._retry(letter)).as_dict())
                outcome = "ok"
            except BiometricsError as error:
                refused.append({"id": letter.id, "error": error.code, "detail": error.detail})
                outcome = error.code
            await self._auditor.record(
                origin, RETRY, str(letter.id), outcome, call_id=letter.call_id
            )
        return JSONResponse({"retried": retried, "refused": refused}, status_code=202)

    async def _retry(self, letter: DeadLetter) -> DeadLetter:
        if letter.delivered_at is not None:
            raise DeadLetterNotRetryable(
                f"dead letter {letter.id} was delivered at {isoformat(letter.delivered_at)}; "
                "there is nothing to send"
            )
        if self._sender is None:
            raise DeadLetterNotRetryable(
                "no webhook sender is configured (BIOMETRICS_WEBHOOK_URLS is empty); set "
                f"it to include {letter.url} to send this dead letter again"
            )
        self._sender.resend(letter)
        marked = await run_in_threadpool(self._store.mark_retried, letter.id, utcnow())
        return marked or letter


def _query(request: Request, limit: int) -> DeadLetterQuery:
    params = request.query_params
    return DeadLetterQuery(
        url=params.get("url") or None,
        call_id=params.get("call_id") or None,
        delivered=_flag(params.get("delivered")),
        after=cursor_of(params.get("cursor")),
        limit=limit,
    )


def _flag(value: str | None) -> bool | None:
    if not value:
        return None
    if value not in ("true", "false"):
        raise InvalidRequest("delivered must be true or false")
    return value == "true"
