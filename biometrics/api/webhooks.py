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

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from biometrics.api import schemas
from biometrics.api.audit import Auditor, origin_of
from biometrics.api.auth import Guard
from biometrics.api.openapi import Operation, Reply
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


TAG = "webhooks"
LIST = Operation(
    "listDeadLetters",
    "Read the webhook dead letters, oldest first (admin keys only)",
    TAG,
    [Reply(200, "a page of dead letters; next_cursor reads the next", schemas.DeadLetterPage)],
    {400: ("invalid_request",)},
    query=schemas.DeadLetterFilter,
)
RETRY_ALL = Operation(
    "retryDeadLetters",
    "Send every undelivered dead letter again, a page at a time (admin keys only)",
    TAG,
    [Reply(202, "those handed to the sender, and those refused with why", schemas.RetryReport)],
    {400: ("invalid_request",)},
    query=schemas.DeadLetterFilter,
)
RETRY_ONE = Operation(
    "retryDeadLetter",
    "Send one dead letter again (admin keys only)",
    TAG,
    [Reply(202, "on its way, not yet delivered: the row, retried_at set", schemas.DeadLetter)],
    {404: ("dead_letter_not_found",), 409: ("dead_letter_not_retryable",)},
)


class WebhookRoutes:
    def __init__(self, store: DeadLetters, sender: WebhookSender | None, auditor: Auditor) -> None:
        self._store = store
        self._sender = sender
        self._auditor = auditor

    def routes(self, guard: Guard) -> list[Route]:
        return [
            guard.route(BASE, Role.ADMIN, self.list_dead_letters, "GET", LIST),
            guard.route(BASE + "/retry", Role.ADMIN, self.retry_all, "POST", RETRY_ALL),
            guard.route(
                BASE + "/{dead_letter_id}/retry", Role.ADMIN, self.retry_one, "POST", RETRY_ONE
            ),
        ]

    async def list_dead_letters(self, request: Request) -> Response:
        """Rows oldest first, ``limit`` a page, ``next_cursor`` to the next page; filtered by
        ``url``, ``call_id`` and ``delivered`` (true or false)."""
        asked = schemas.query(request, schemas.DeadLetterFilter)
        rows = await run_in_threadpool(self._store.query, _query(asked, asked.limit + 1))
        shown = rows[: asked.limit]
        page = {
            "dead_letters": [row.as_dict() for row in shown],
            "next_cursor": str(shown[-1].id) if len(rows) > asked.limit else None,
        }
        return schemas.respond(schemas.DeadLetterPage, page)

    async def retry_one(self, request: Request) -> Response:
        """Send one dead letter again: 202 with its row (``retried_at`` set)."""
        raw = request.path_params["dead_letter_id"]
        known = raw.isdigit() and int(raw) <= schemas.MAX_ROW_ID  # a larger one is no row's
        letter = await run_in_threadpool(self._store.get, int(raw)) if known else None
        call_id = None if letter is None else letter.call_id
        async with self._auditor.act(request, RETRY, raw, call_id=call_id):
            if letter is None:
                raise DeadLetterNotFound(f"no webhook dead letter has the id {raw!r}")
            retried = await self._retry(letter)
        return schemas.respond(schemas.DeadLetter, retried.as_dict(), 202)

    async def retry_all(self, request: Request) -> Response:
        """Send again every undelivered dead letter (``limit`` of them, oldest first,
        filtered as the list): 202 with those handed to the sender and those refused."""
        asked = schemas.query(request, schemas.DeadLetterFilter)
        query = _query(asked, asked.limit)
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
        report = {"retried": retried, "refused": refused}
        return schemas.respond(schemas.RetryReport, report, 202)

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


def _query(asked: schemas.DeadLetterFilter, limit: int) -> DeadLetterQuery:
    return DeadLetterQuery(
        url=asked.url or None,
        call_id=asked.call_id or None,
        delivered=None if asked.delivered is None else asked.delivered == "true",
        after=schemas.after(asked.cursor),
        limit=limit,
    )
