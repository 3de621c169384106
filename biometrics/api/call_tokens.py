"""``POST /v1/calls/{call_id}/tokens``: mint a call token (:mod:`biometrics.store.call_tokens`)
for one call, with a role no wider than the minting key's own, so that a key can hand a
credential for one call to whoever handles that call and nothing more.

Only an API key mints (a call token cannot renew or widen itself). With authentication
turned off nothing would check a token, so the route answers 409 instead of minting one
that means nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from biometrics.api import schemas
from biometrics.api.audit import Auditor, origin_of
from biometrics.api.auth import REFUSED, Caller, Guard
from biometrics.api.openapi import WITH_BODY, Operation, Reply
from biometrics.clock import isoformat
from biometrics.errors import BiometricsError, Forbidden, InvalidRequest
from biometrics.statuses import Role
from biometrics.store.call_tokens import CallTokens
from biometrics.streaming.identity import call_id_problem

MINTED = "call.token"  # the audit action of a minted token: subject the call, outcome the role


class AuthOff(BiometricsError):
    code = "auth_off"
    status_code = 409


MINT = Operation(
    "mintCallToken",
    "Mint a call token: a credential for this call alone",
    "calls",
    [Reply(201, "the token, shown this once", schemas.CallToken)],
    {status: ("invalid_request",) for status in WITH_BODY}
    | {403: ("forbidden",), 409: ("auth_off",)},
    body=schemas.CallTokenRequest,
    description=(
        "Any API key may mint, for a role no wider than its own (an admin key: any but "
        "admin). The token acts on this call's routes only, until `expires_at`."
    ),
)


class CallTokenRoutes:
    def __init__(self, tokens: CallTokens, auditor: Auditor, auth_enabled: bool) -> None:
        self._tokens = tokens
        self._auditor = auditor
        self._auth_enabled = auth_enabled

    def routes(self, guard: Guard) -> list[Route]:
        return [guard.route("/v1/calls/{call_id}/tokens", None, self.mint, "POST", MINT)]

    async def mint(self, request: Request) -> Response:
        """``{"role", "ttl_seconds"}`` → 201 ``{"token", "call_id", "role", "expires_at"}``."""
        if not self._auth_enabled:
            raise AuthOff(
                "authentication is off (BIOMETRICS_AUTH_ENABLED=false): every route is open "
                "and no call token would be checked"
            )
        call_id = request.path_params["call_id"]
        problem = call_id_problem(call_id)
        if problem is not None:
            raise InvalidRequest(f"bad call id: {problem}")
        asked = await schemas.json_body(request, schemas.CallTokenRequest)
        role, ttl = Role(asked.role), asked.ttl_seconds
        caller: Caller = request.state.api_key
        if not caller.role.allows(role):
            where = f"{request.method} {request.url.path}"
            await self._auditor.record(origin_of(request), REFUSED, where, Forbidden.code)
            raise Forbidden(
                f"API key {caller.key_id} has the role {caller.role}: it may mint call tokens "
                f"for {caller.role} only, not {role} (an admin key may mint any)"
            )
        token, granted = self._tokens.mint(call_id, role, caller.key_id, ttl)
        await self._auditor.record(origin_of(request), MINTED, call_id, role.value, call_id=call_id)
        minted = {
            "token": token,
            "call_id": call_id,
            "role": role.value,
            "expires_at": isoformat(_moment(granted.expires_at)),
        }
        return schemas.respond(schemas.CallToken, minted, 201)


def _moment(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)
