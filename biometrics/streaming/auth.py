"""Who may stream audio: ACS signs each WebSocket connection with a bearer JWT (RS256, issuer
Call Automation, audience your ACS resource id), checked against Call Automation's published
keys; other platforms (and ACS through a ``transportUrl`` query string) present an API key
with the ``stream`` role, or a call token with the ``stream`` role (which opens the socket of
its own call only: :class:`Streamer`). Each is checked before any audio is read, and so is
the key's quota of open sockets (:class:`SocketQuota`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import jwt

from biometrics.errors import BiometricsError, Unauthenticated
from biometrics.statuses import Role
from biometrics.store.audit import RefusalThrottle
from biometrics.store.call_tokens import CallTokens, is_call_token
from biometrics.store.keys import PREFIX, KeyStore, Refusal, key_from_headers

ACS_ISSUER = "https://acscallautomation.communication.azure.com"
ACS_JWKS_URL = "https://acscallautomation.communication.azure.com/calling/keys"
ACS = "acs"  # who streams when ACS's signed token let the socket in

logger = logging.getLogger(__name__)


class Unauthorized(BiometricsError):
    code = "unauthorized"
    status_code = 401


class TooManySockets(BiometricsError):
    code = "too_many_sockets"
    status_code = 503


class SocketQuota:
    """Open call sockets per API key, in this process: a key that holds ``per_key`` of them
    gets no more until one closes (0: no limit). Sockets that ACS's signed token let in are
    not counted here: they all come from your own ACS resource, and the calls a process
    holds (``BIOMETRICS_STREAM_MAX_CALLS``) bound them. A key's refusals are audited at most
    once a minute (``refusals``)."""

    def __init__(self, per_key: int) -> None:
        self._per_key = per_key
        self._open: Counter[str] = Counter()
        self.refusals = RefusalThrottle(60.0)

    @contextlib.contextmanager
    def hold(self, who: str | None) -> Iterator[None]:
        """One socket of ``who`` (a key id; ``acs`` or None are not counted) while the block
        runs, however it ends; :class:`TooManySockets` when the key holds its quota."""
        if who is None or who == ACS or not self._per_key:
            yield
            return
        if self._open[who] >= self._per_key:
            raise TooManySockets(
                f"API key {who} holds {self._per_key} open call sockets "
                "(BIOMETRICS_STREAM_MAX_SOCKETS_PER_KEY); try again later"
            )
        self._open[who] += 1
        try:
            yield
        finally:
            self._open[who] -= 1
            if not self._open[who]:
                del self._open[who]


class SigningKeys:
    """Call Automation's public keys, from its JWKS URL or a JWKS file, cached. An unknown
    key id reloads them (keys rotate), but at most once every ``min_refresh_seconds``, so
    tokens with made-up key ids cannot make the service fetch keys on every socket."""

    def __init__(
        self,
        url: str | None = None,
        file: Path | None = None,
        *,
        min_refresh_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (url is None) == (file is None):
            raise ValueError("signing keys come from a URL or a file, one of the two")
        self._url = url
        self._file = file
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK:
        """Blocking (the first call, and a reload, read the keys)."""
        with self._lock:
            if kid not in self._keys and self._may_reload():
                self._keys = self._load()
                self._loaded_at = self._clock()
            found = self._keys.get(kid)
        if found is None:
            raise Unauthorized(f"the token's signing key {kid[:64]!r} is not one of ACS's")
        return found

    def _may_reload(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at >= self._min_refresh

    def _load(self) -> dict[str, jwt.PyJWK]:
        try:
            if self._file is not None:
                text = self._file.read_text(encoding="utf-8")
            else:
                assert self._url is not None
                with urllib.request.urlopen(self._url, timeout=10) as response:
                    text = response.read().decode("utf-8")
            keys = jwt.PyJWKSet.from_json(text).keys
        except (OSError, ValueError, jwt.PyJWTError) as error:
            logger.warning("ACS signing keys unavailable", extra={"problem": str(error)})
            raise Unauthorized("signing keys unavailable") from None
        return {key.key_id: key for key in keys if key.key_id is not None}


class SocketAuthenticator:
    """Validates ``Authorization: Bearer <JWT>``. Blocking: the first check (and
    one after a key rotation) reads the keys, so call it from a worker thread."""

    def __init__(
        self,
        audience: str,
        issuer: str = ACS_ISSUER,
        jwks_url: str | None = ACS_JWKS_URL,
        jwks_file: Path | None = None,
    ) -> None:
        self.audience = audience
        self.issuer = issuer
        if jwks_file is not None:
            self._keys = SigningKeys(file=jwks_file)
        else:
            self._keys = SigningKeys(url=jwks_url or ACS_JWKS_URL)

    def check(self, authorization: str | None) -> dict[str, object]:
        """The token's claims, or :class:`Unauthorized` saying what is wrong."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if not isinstance(kid, str):
                raise Unauthorized("invalid token: it names no signing key (kid)")
            claims: dict[str, object] = jwt.decode(
                token,
                self._keys.key(kid).key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
            return claims
        except jwt.PyJWTError as error:
            raise Unauthorized(f"invalid token: {error}") from None


@dataclasses.dataclass(frozen=True)
class Streamer:
    """Who a socket's credential let in: ``acs``, a key id or ``call-token:<key id>``, and for
    a call token the only call the socket may join."""

    who: str
    call_id: str | None = None


class SocketGate:
    """ACS's token, a ``stream`` key or a ``stream`` call token; ``keys`` None means API keys
    (and call tokens) are turned off, and both None leaves the socket open (a development
    setting, warned about at start)."""

    def __init__(
        self, keys: KeyStore | None, acs: SocketAuthenticator | None, tokens: CallTokens
    ) -> None:
        self._keys = keys
        self._acs = acs
        self._tokens = tokens

    @property
    def open(self) -> bool:
        return self._keys is None and self._acs is None

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Streamer:
        """Blocking. Who streams; :class:`Unauthorized` if nobody may."""
        key = query.get("token") or key_from_headers(headers) or _bearer_call_token(headers)
        if key is not None and is_call_token(key):
            return self._check_call_token(key)
        if key is not None and key.startswith(PREFIX + "_"):
            return Streamer(self._check_key(key))
        authorization = headers.get("authorization")
        if self._acs is not None and authorization:
            self._acs.check(authorization)
            return Streamer(ACS)
        wanted = "ACS's signed token (Authorization: Bearer) or " if self._acs else ""
        if self._keys is None:
            raise Unauthorized(f"this socket needs {wanted}a valid credential")
        raise Unauthorized(
            f"this socket needs {wanted}an API key with the stream role (?token= or "
            "Authorization: Bearer)"
        )

    def _check_call_token(self, token: str) -> Streamer:
        if self._keys is None:
            raise Unauthorized("API keys are turned off: this socket takes ACS's token only")
        try:
            granted = self._tokens.check(token)
        except Unauthenticated as refused:
            raise Unauthorized(refused.detail) from None
        if not granted.role.allows(Role.STREAM):
            raise Unauthorized(f"this call token has the role {granted.role}, not stream")
        return Streamer(granted.actor, granted.call_id)

    def _check_key(self, key: str) -> str:
        if self._keys is None:
            raise Unauthorized("API keys are turned off: this socket takes ACS's token only")
        found = self._keys.authenticate(key)
        if isinstance(found, Refusal):
            raise Unauthorized(found.reason)
        if not found.role.allows(Role.STREAM):
            raise Unauthorized(f"API key {found.key_id} has the role {found.role}, not stream")
        return found.key_id


def _bearer_call_token(headers: Mapping[str, str]) -> str | None:
    """A call token sent as ``Authorization: Bearer`` (which otherwise carries ACS's JWT)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and is_call_token(token) else None
