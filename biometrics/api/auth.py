"""Who may call the API: every ``/v1`` route names the role it needs, and a request carries
an API key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

No key, or an unknown, revoked or expired one, is 401; a key whose role does not allow the
route is 403; both with the JSON error body and a ``WWW-Authenticate`` header, and both
leave an ``auth.refused`` row in the audit trail (the key id when the key was genuine,
never the presented text). A key over its rate is 429, audited at most once a minute. With
authentication turned off (a development setting, warned about at start and on
``/readyz``) every route is open.

A call token (``bmc.…``, :mod:`biometrics.store.call_tokens`) is presented the same way. It
is checked without the database, and lets in only the routes its role allows *and* whose
``call_id`` path parameter is its call; anything else is 403. It counts against the rate of
the key that minted it, and the audit trail names it ``call-token:<that key's id>``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from biometrics.api.audit import Auditor, origin_of
from biometrics.api.openapi import ApiRoute, Operation
from biometrics.errors import Forbidden, RateLimited, Unauthenticated
from biometrics.statuses import Role
from biometrics.store.audit import RefusalThrottle
from biometrics.store.call_tokens import CallTokens, is_call_token
from biometrics.store.keys import KeyStore, Refusal, key_from_headers

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class RateLimit:
    """A token bucket per key: ``per_minute`` requests a minute, in bursts of as many. A key's
    refusals are audited at most once a minute (``refusals``)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)
        self.refusals = RefusalThrottle(60.0, clock)

    def take(self, key_id: str) -> None:
        """Count one request of ``key_id``; :class:`RateLimited` when it has none left."""
        now = self._clock()
        tokens, at = self._buckets.get(key_id, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            raise RateLimited(
                f"API key {key_id} made more than {self._capacity:g} requests a minute "
                "(BIOMETRICS_RATE_LIMIT_PER_MINUTE); slow down",
                retry_after=(1.0 - tokens) / self._rate,
            )
        self._buckets[key_id] = (tokens - 1.0, now)


REFUSED = "auth.refused"


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who the guard let in (``request.state.api_key``): an API key, or a call token."""

    key_id: str  # as the audit trail names it: the key id, or call-token:<minting key id>
    role: Role
    rate_key: str  # whose rate the request counts against: the key, or the minting key
    call_id: str | None = None  # a call token's call: the only call it may act on


class Guard:
    def __init__(
        self,
        keys: KeyStore,
        enabled: bool,
        auditor: Auditor,
        tokens: CallTokens,
        limit: RateLimit | None = None,
    ) -> None:
        self._keys = keys
        self.enabled = enabled
        self._auditor = auditor
        self._tokens = tokens
        self._limit = limit

    def requires(self, role: Role | None, endpoint: Endpoint) -> Endpoint:
        """``endpoint``, answered only for a caller whose role allows ``role``; None lets in
        any API key but no call token (the endpoint judges the role itself)."""
        if not self.enabled:
            return endpoint

        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            where = f"{request.method} {request.url.path}"
            try:
                caller = await self.authenticate(_presented(request))
            except Unauthenticated as refused:
                await self._auditor.record(origin_of(request), REFUSED, where, refused.code)
                raise
            problem = _forbidden(caller, role, request.path_params.get("call_id"))
            if problem is not None:
                await self._auditor.record(
                    origin_of(request, caller.key_id), REFUSED, where, Forbidden.code
                )
                raise Forbidden(problem)
            if self._limit is not None:
                await self._take(self._limit, request, caller.rate_key, where)
            request.state.api_key = caller
            return await endpoint(request)

        return guarded

    async def _take(self, limit: RateLimit, request: Request, key_id: str, where: str) -> None:
        """One request of ``key_id`` counted; a refusal audited as its first of the minute."""
        try:
            limit.take(key_id)
        except RateLimited as refused:
            if limit.refusals.first(key_id):
                await self._auditor.record(origin_of(request, key_id), REFUSED, where, refused.code)
            raise

    def route(
        self,
        path: str,
        role: Role | None,
        endpoint: Endpoint,
        method: str,
        operation: Operation | None = None,
    ) -> Route:
        """A route whose endpoint needs ``role`` (see :meth:`requires`), documented by
        ``operation`` with the credentials this guard takes there."""
        guarded = self.requires(role, endpoint)
        if operation is None:
            return Route(path, guarded, methods=[method])
        # A call token is let into a route that needs a role and names its call.
        call_token = role is not None and "{call_id}" in path
        return ApiRoute(path, guarded, method, operation.guarded(role, call_token))

    async def authenticate(self, presented: str | None) -> Caller:
        """The key or call token, or :class:`Unauthenticated` saying what is wrong with it."""
        if presented is None:
            raise Unauthenticated(
                "an API key is required: send Authorization: Bearer <key> or X-API-Key"
            )
        if is_call_token(presented):
            token = self._tokens.check(presented)
            return Caller(token.actor, token.role, token.issued_by, token.call_id)
        found = await run_in_threadpool(self._keys.authenticate, presented)
        if isinstance(found, Refusal):
            raise Unauthenticated(found.reason)
        return Caller(found.key_id, found.role, found.key_id)


def _forbidden(caller: Caller, role: Role | None, call_id: object) -> str | None:
    """Why ``caller`` may not use a route that needs ``role`` on ``call_id`` (the route's
    ``call_id`` path parameter, None when it has none); None when it may."""
    if caller.call_id is None:
        if role is None or caller.role.allows(role):
            return None
        return f"API key {caller.key_id} has the role {caller.role}; this needs {role} (or admin)"
    if role is None:
        return f"this call token is bound to call {caller.call_id!r}; here, use an API key"
    if call_id != caller.call_id:
        return f"this call token is bound to call {caller.call_id!r}; it cannot be used here"
    if not caller.role.allows(role):
        return f"this call token has the role {caller.role}; this needs {role} (or admin)"
    return None


def _presented(request: Request) -> str | None:
    """The key a request carries; a bearer token that is not one of ours still counts as
    presented, so that it is refused as unknown rather than as missing."""
    key = key_from_headers(request.headers)
    if key is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return key
