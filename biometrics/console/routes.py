"""The agent console's routes: its pages (live calls, one call, speakers), signing in and
out, and ``/console/api/...``, through which its pages call the service's own ``/v1`` routes.

**One path for every act.** A page never claims, enrolls, opts out or deletes by itself:
its script calls ``/console/api/<route>``, which hands the request, unchanged but for the
path, to the ``/v1`` route of the same name, with the signed-in key as its bearer token. So
the console's acts pass the same role checks, rate limits, validation, audit rows and JSON
errors as the API's, and its live view reads the same server-sent events.

**Credentials.** A request may carry a key in ``Authorization`` (automation, as for
``/v1``); else the session cookie's key is used (:mod:`biometrics.console.sessions`). A
state-changing request that relies on the cookie must also carry the session's CSRF token
(the ``X-CSRF-Token`` header from the page's script, or the sign-out form's field): the
cookie is SameSite=Strict already, and the token covers browsers or proxies that do not keep
to that. A request that presents its key in a header needs no token: nothing sends that
header on a user's behalf.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from biometrics.api.auth import Caller, Guard
from biometrics.api.speakers import speaker_json
from biometrics.console.sessions import COOKIE, ConsoleSession, ConsoleSessions
from biometrics.errors import BiometricsError, CallNotFound, Forbidden, Unauthenticated
from biometrics.statuses import CallStatus, Role
from biometrics.store import Database, queries
from biometrics.store.calls import CallStore
from biometrics.store.keys import key_from_headers
from biometrics.store.recordings import Recordings
from biometrics.store.verdicts import VerdictHistory
from biometrics.streaming.identity import call_id_problem
from biometrics.streaming.registry import CallRegistry

logger = logging.getLogger(__name__)

PREFIX = "/console"
STATIC = PREFIX + "/static"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The /v1 routes the console's pages use; the rest of the API is not reachable by cookie.
# "calls/" takes in a participant's recording (.../audio), which the call page plays.
BRIDGED = ("speakers", "calls/")
RECENT_CALLS = 50
SPEAKERS_PAGE = 50
HISTORY = 100
# The pages load their script, styles and recordings from the service alone, and no page
# may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Endpoint = Callable[[Request], Awaitable[Response]]


class CsrfRefused(BiometricsError):
    code = "csrf_failed"
    status_code = 403


@dataclasses.dataclass(frozen=True)
class SpeechTargets:
    """How much speech the progress bars count towards."""

    first_seconds: float  # a call's first verdict
    final_seconds: float  # its final verdict (no speech is buffered past it)
    enroll_seconds: float  # a voiceprint


@dataclasses.dataclass(frozen=True)
class CookiePolicy:
    sessions: ConsoleSessions
    secure: bool | None  # None: Secure when the request came over https

    def set(self, response: Response, request: Request, value: str) -> None:
        secure = request.url.scheme == "https" if self.secure is None else self.secure
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.sessions.lifetime_seconds,
            path=PREFIX,
            secure=secure,
            httponly=True,
            samesite="strict",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")


class Console:
    """The console's pages over the call registry, the stores and the ``/v1`` routes."""

    def __init__(
        self,
        guard: Guard,
        cookies: CookiePolicy,
        calls: CallRegistry,
        call_store: CallStore,
        history: VerdictHistory,
        database: Database,
        targets: SpeechTargets,
        recordings: Recordings,
    ) -> None:
        self._guard = guard
        self._cookies = cookies
        self._sessions = cookies.sessions
        self._calls = calls
        self._call_store = call_store
        self._history = history
        self._database = database
        self._targets = targets
        self._recordings = recordings
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("biometrics.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._templates.globals.update(
            number=_number,
            score_text=_score_text,
            enrollment_text=_enrollment_text,
            clock=_clock,
            audio_path=_audio_path,
        )

    def routes(self, api: Sequence[BaseRoute]) -> list[BaseRoute]:
        """The console's routes; ``api`` are the service's, of which the pages use some."""
        return [
            Route(PREFIX, self._page(Role.READ, self.calls_page), methods=["GET"]),
            Route(
                PREFIX + "/calls/{call_id}", self._page(Role.READ, self.call_page), methods=["GET"]
            ),
            Route(PREFIX + "/speakers", self._page(Role.READ, self.speakers_page), methods=["GET"]),
            Route(PREFIX + "/sign-in", self.sign_in_form, methods=["GET"]),
            Route(PREFIX + "/sign-in", self.sign_in, methods=["POST"]),
            Route(PREFIX + "/sign-out", self.sign_out, methods=["POST"]),
            Route(PREFIX + "/api/{rest:path}", ApiBridge(self._sessions, Router(list(api)))),
            Mount(STATIC, StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
        ]

    # --- pages ---------------------------------------------------------------------------

    async def calls_page(self, request: Request) -> Response:
        stored = await self._call_store.recent(RECENT_CALLS)
        calls = []
        for summary in stored:
            live = self._calls.find(summary.call_id)  # ahead of the database, if held here
            calls.append((summary if live is None else live.summary()).as_dict())
        return self._render(request, "calls.html", "Live calls", page="calls", calls=calls)

    async def call_page(self, request: Request) -> Response:
        call_id: str = request.path_params["call_id"]
        summary = None if call_id_problem(call_id) else await self._calls.summary(call_id)
        if summary is None:
            raise CallNotFound(f"call {call_id!r} is not known")
        await self._call_store.flush()  # the participants' rows, for their history
        raw_ids = [participant.raw_id for participant in summary.participants]

        def read_histories() -> dict[str, list[dict[str, Any]]]:
            return {
                raw_id: [
                    verdict.as_dict()
                    for verdict in self._history.of_participant(call_id, raw_id, HISTORY)
                ]
                for raw_id in raw_ids
            }

        histories = await run_in_threadpool(read_histories)
        # Only admin keys may download a recording, and only once the call has ended: the
        # page offers a player where the API would answer, and says so where it would not.
        may_play = _may(request, Role.ADMIN)
        recordings: dict[str, str] = {}
        if may_play and summary.status == CallStatus.ENDED:
            recordings = await run_in_threadpool(self._recordings.kept, call_id)
        blank = {
            "participant_raw_id": "",
            "net_speech_seconds": 0.0,
            "claim": None,
            "latest_verdict": None,
            "enrollment": None,
        }
        blank_verdict = dict.fromkeys(
            ("verdict_id", "created_at", "decision", "score", "threshold", "speech_seconds"), ""
        )
        return self._render(
            request,
            "call.html",
            f"Call {call_id}",
            page="call",
            call=summary.as_dict(),
            histories=histories,
            blank=blank,
            blank_verdict=blank_verdict,
            may_play=may_play,
            recordings=recordings,
        )

    async def speakers_page(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()[:128]
        cursor = request.query_params.get("cursor") or None
        minimum = self._targets.enroll_seconds

        def page() -> tuple[list[dict[str, Any]], str | None]:
            with self._database.session() as session:
                found = queries.list_speakers(
                    session, after=cursor, limit=SPEAKERS_PAGE + 1, containing=query or None
                )
                shown = found[:SPEAKERS_PAGE]
                more = shown[-1].speaker_id if len(found) > SPEAKERS_PAGE else None
                return [speaker_json(speaker, minimum) for speaker in shown], more

        speakers, next_cursor = await run_in_threadpool(page)
        return self._render(
            request,
            "speakers.html",
            "Speakers",
            page="speakers",
            speakers=speakers,
            query=query,
            next_cursor=next_cursor,
            may_delete=_may(request, Role.ADMIN),
        )

    # --- signing in and out --------------------------------------------------------------

    async def sign_in_form(self, request: Request) -> Response:
        return self._sign_in_page(request, request.query_params.get("next"), None, 200)

    async def sign_in(self, request: Request) -> Response:
        """Check the form's key as the API would (an unknown key is refused and audited),
        then start a new session: a new CSRF token, so none seen before signing in works
        after it."""
        form = await request.form()
        session = self._sessions.open(request.cookies.get(COOKIE))
        target = _next_page(_field(form.get("next")))
        if session is None or not session.csrf_matches(_field(form.get("csrf_token"))):
            return self._sign_in_page(
                request, target, "the sign-in form expired; sign in again", 403
            )
        api_key = (_field(form.get("api_key")) or "").strip()

        async def start(request: Request) -> Response:
            caller: Caller | None = getattr(request.state, "api_key", None)
            logger.info(
                "console sign-in",
                extra={"key_id": None if caller is None else caller.key_id, "next": target},
            )
            value, _ = self._sessions.new(api_key or None)
            response = RedirectResponse(target, status_code=303)
            self._cookies.set(response, request, value)
            return response

        try:
            return await self._guard.requires(None, start)(_with_key(request, api_key))
        except (Unauthenticated, Forbidden) as refused:
            return self._sign_in_page(request, target, refused.detail, refused.status_code)

    async def sign_out(self, request: Request) -> Response:
        form = await request.form()
        session = self._sessions.open(request.cookies.get(COOKIE))
        if session is not None and not session.csrf_matches(_field(form.get("csrf_token"))):
            raise CsrfRefused("sign out from the console's own page")
        response = RedirectResponse(PREFIX + "/sign-in", status_code=303)
        self._cookies.clear(response)
        return response

    # --- helpers -------------------------------------------------------------------------

    def _page(self, role: Role, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` for a caller with ``role``, by header or session; a browser that has
        not signed in (or whose key no longer works) goes to the sign-in form."""
        guarded = self._guard.requires(role, endpoint)

        async def page(request: Request) -> Response:
            session = self._sessions.open(request.cookies.get(COOKIE))
            if session is not None and session.api_key and not _presents_key(request):
                request = _with_key(request, session.api_key)
            request.state.console_session = session
            try:
                return await guarded(request)
            except Unauthenticated:
                wanted = urllib.parse.quote(request.url.path, safe="/")
                return RedirectResponse(
                    f"{PREFIX}/sign-in?next={wanted}", status_code=303, headers=SECURITY_HEADERS
                )

        return page

    def _render(self, request: Request, template: str, title: str, **context: Any) -> Response:
        session: ConsoleSession | None = getattr(request.state, "console_session", None)
        fresh = None
        if session is None:  # authentication is off, or the key came in a header
            fresh, session = self._sessions.new(None)
        caller: Caller | None = getattr(request.state, "api_key", None)
        html = self._templates.get_template(template).render(
            title=title,
            static=STATIC,
            csrf_token=session.csrf_token,
            signed_in=_who(caller, self._guard.enabled),
            can_sign_out=session.api_key is not None,
            may_verify=_may(request, Role.VERIFY),
            may_enroll=_may(request, Role.ENROLL),
            targets=self._targets,
            enroll_seconds=self._targets.enroll_seconds,
            **context,
        )
        response = HTMLResponse(html, headers=SECURITY_HEADERS)
        if fresh is not None:
            self._cookies.set(response, request, fresh)
        return response

    def _sign_in_page(
        self, request: Request, next_page: str | None, error: str | None, status_code: int
    ) -> Response:
        """The form, with a new key-less session whose CSRF token it posts back."""
        value, session = self._sessions.new(None)
        hours = self._sessions.lifetime_seconds / 3600
        html = self._templates.get_template("sign_in.html").render(
            title="Sign in",
            static=STATIC,
            csrf_token=session.csrf_token,
            signed_in=None,
            can_sign_out=False,
            error=error,
            next=_next_page(next_page),
            lifetime=f"{hours:g} hours" if hours >= 1 else f"{hours * 60:g} minutes",
        )
        response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
        self._cookies.set(response, request, value)
        return response


class ApiBridge:
    """``/console/api/<route>`` answered by the ``/v1/<route>`` of the service's router,
    with the session's key as bearer token when the request brings none of its own."""

    def __init__(self, sessions: ConsoleSessions, api: Router) -> None:
        self._sessions = sessions
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        rest: str = scope["path_params"]["rest"]
        if not rest.startswith(BRIDGED):
            raise HTTPException(404, f"the console does not reach /v1/{rest}")
        headers = list(scope["headers"])
        if not _presents_key(request):
            session = self._sessions.open(request.cookies.get(COOKIE))
            if request.method not in SAFE_METHODS and (
                session is None or not session.csrf_matches(request.headers.get(CSRF_HEADER))
            ):
                raise CsrfRefused(
                    "this request relies on the console's session cookie and needs its CSRF "
                    "token in X-CSRF-Token (from the page's csrf-token meta tag); automation "
                    "sends Authorization: Bearer <key> instead"
                )
            if session is not None and session.api_key:
                headers.append((b"authorization", f"Bearer {session.api_key}".encode()))
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        api_scope = {
            **scope,
            "path": "/v1/" + rest,
            "raw_path": raw_path.replace((PREFIX + "/api/").encode(), b"/v1/", 1),
            "headers": headers,
        }
        await self._api(api_scope, receive, send)


def _presents_key(request: Request) -> bool:
    return key_from_headers(request.headers) is not None or "authorization" in request.headers


def _with_key(request: Request, api_key: str) -> Request:
    """The request as if it had sent ``api_key`` as its bearer token."""
    headers = [(name, value) for name, value in request.scope["headers"] if name != b"x-api-key"]
    headers = [(name, value) for name, value in headers if name != b"authorization"]
    if api_key:
        headers.append((b"authorization", f"Bearer {api_key}".encode()))
    return Request({**request.scope, "headers": headers}, request.receive)


def _may(request: Request, role: Role) -> bool:
    caller: Caller | None = getattr(request.state, "api_key", None)
    return caller is None or caller.role.allows(role)


def _who(caller: Caller | None, auth_enabled: bool) -> str:
    if caller is not None:
        return f"key {caller.key_id} ({caller.role})"
    return "signed in" if auth_enabled else "authentication off"


def _field(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _next_page(value: str | None) -> str:
    """Where to go after signing in: a console page only (never another site)."""
    if value and value.startswith(PREFIX) and "//" not in value and "\\" not in value:
        return value
    return PREFIX


def _audio_path(call_id: str, raw_id: str) -> str:
    """A participant's recording, through the bridge (raw ids hold ``:``, ``+`` and ``/``)."""
    call, raw = urllib.parse.quote(call_id, safe=""), urllib.parse.quote(raw_id, safe="")
    return f"{PREFIX}/api/calls/{call}/participants/{raw}/audio"


def _number(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else ""


def _clock(moment: str | None) -> str:
    """The time of day of an RFC 3339 UTC time (the full time is the element's datetime)."""
    return (moment or "")[11:19]


def _score_text(verdict: dict[str, Any] | None) -> str:
    if verdict is None or verdict.get("score") is None:
        return "" if verdict is None else (verdict.get("detail") or "")
    return f"score {verdict['score']:.1f}, threshold {verdict['threshold']:.1f}"


def _enrollment_text(progress: dict[str, Any] | None) -> str:
    if progress is None:
        return "none"
    return (
        f"{progress['speaker_id']}: {progress['status']}, "
        f"{progress['enrolled_speech_seconds']:.1f} s enrolled"
    )
