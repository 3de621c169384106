"""What happened: the counts every call adds to while the soak runs, and the report that
accounts for every frame, verdict and event at the end (what did not arrive is lost)."""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from biometrics.client import ApiError
from biometrics.soak.malformed import EXPECTED_OUTCOMES
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.service import Service

MAX_ERRORS_LISTED = 50


class Tally:
    """Counts shared by every call of the run (the calls run on one event loop)."""

    def __init__(self) -> None:
        self.faults: collections.Counter[str] = collections.Counter()
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.errors: list[str] = []
        self.error_kinds: collections.Counter[str] = collections.Counter()

    def error(self, kind: str, text: str) -> None:
        self.error_kinds[kind] += 1
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.append(f"{kind}: {text}")

    def outcome(self, kind: str, outcome: str, where: str) -> None:
        self.outcomes[kind][outcome] += 1
        if outcome != EXPECTED_OUTCOMES[kind]:
            self.error(
                "unexpected_close", f"{kind} {where}: {outcome}, not {EXPECTED_OUTCOMES[kind]}"
            )

    def failure(self, where: str, error: BaseException) -> None:
        if isinstance(error, ApiError) and error.status >= 500:
            self.error("http_5xx", f"{where}: {error}")
        else:
            self.error("exception", f"{where}: {type(error).__name__}: {error}")


@dataclasses.dataclass
class CallResult:
    call_id: str
    genuine: bool
    sockets: int = 0
    # Behind a balancer, the replica that took each socket, as its answer named it (the
    # REPLICA_HEADER HAProxy adds); None where nothing named one.
    replicas: list[str | None] = dataclasses.field(default_factory=list)
    frames_sent: int = 0
    frames_processed: int = 0
    dropped: int = 0
    events: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> type, over SSE
    verdicts: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> decision, SSE
    persisted: set[str] = dataclasses.field(default_factory=set)
    last_caller_decision: str | None = None  # the caller's last scored verdict
    # When things happened, on this machine's wall clock (``time.time()``), for latencies:
    # the call's first frame timestamp, the send time of each caller frame in order and how
    # late each frame went out against its schedule, and each verdict event's arrival.
    audio_start: datetime | None = None
    caller_sent_at: list[float] = dataclasses.field(default_factory=list)
    send_lag: list[float] = dataclasses.field(default_factory=list)  # seconds, every frame
    verdict_arrivals: list[tuple[float, dict[str, Any]]] = dataclasses.field(default_factory=list)
    caller_speech_seconds: float = 0.0  # net speech the service heard from the caller


@dataclasses.dataclass
class Report:
    calls: int = 0
    waves: int = 0
    sockets: int = 0
    frames_sent: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    verdicts_produced: int = 0
    verdicts_persisted: int = 0
    decisions: dict[str, int] = dataclasses.field(default_factory=dict)
    genuine_accepted: str = ""
    impostor_rejected: str = ""
    events_produced: int = 0
    webhooks_delivered: int = 0  # unique ids of the soak's calls' events
    webhooks_delivered_throwaway: int = 0  # of the calls the throwaway sockets made
    webhook_posts: int = 0
    webhook_refused: int = 0
    webhook_bad_signatures: int = 0
    dead_letters: int | None = None  # None: the service has no dead-letter route
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    malformed_outcomes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    error_samples: list[str] = dataclasses.field(default_factory=list)
    server_exit_code: int | None = None
    lost: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(self.lost.values()) and not any(self.errors.values())

    def as_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "ok": self.ok}, indent=2)

    def table(self) -> str:
        dead = "n/a" if self.dead_letters is None else str(self.dead_letters)
        rows = [
            ("calls", f"{self.calls} in {self.waves} waves, {self.seconds:.0f} s"),
            ("sockets", str(self.sockets)),
            ("frames sent", str(self.frames_sent)),
            (
                "frames processed",
                f"{self.frames_processed} (dropped as malformed: {self.frames_dropped})",
            ),
            ("verdicts produced (SSE)", str(self.verdicts_produced)),
            ("verdicts persisted", str(self.verdicts_persisted)),
            ("decisions", _pairs(self.decisions)),
            ("genuine callers accepted", self.genuine_accepted),
            ("impostors rejected", self.impostor_rejected),
            ("events produced", str(self.events_produced)),
            (
                "webhooks delivered",
                f"{self.webhooks_delivered} unique ids (+{self.webhooks_delivered_throwaway} "
                f"of throwaway sockets; {self.webhook_posts} posts, {self.webhook_refused} "
                f"refused while down, {self.webhook_bad_signatures} bad signatures)",
            ),
            ("webhook dead letters", dead),
            ("faults injected", _pairs(self.faults)),
            *(
                (f"  {kind}", f"{_pairs(outcomes)} (expected: {EXPECTED_OUTCOMES[kind]})")
                for kind, outcomes in sorted(self.malformed_outcomes.items())
            ),
            ("errors", _pairs(self.errors) or "none"),
            ("server exit code (SIGTERM)", str(self.server_exit_code)),
            ("lost", _pairs(self.lost)),
            ("result", "nothing lost" if self.ok else "FAILED"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        lines += [f"  {sample}" for sample in self.error_samples]
        return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))


def account(
    results: Sequence[CallResult],
    tally: Tally,
    webhook: WebhookSink,
    dead_letters: set[str] | None,
) -> Report:
    """Where everything went; what was produced and did not arrive is lost."""
    produced = {event_id for r in results for event_id in r.events}
    # Events of the soak's calls that reached the receiver but not the SSE stream count
    # as produced too (and as missed by SSE).
    calls = {r.call_id for r in results}
    delivered = webhook.received(calls)
    produced |= delivered
    verdicts = {v for r in results for v in r.verdicts}
    persisted = {v for r in results for v in r.persisted}
    decisions = collections.Counter(d for r in results for d in r.verdicts.values())
    genuine = [r for r in results if r.genuine]
    impostors = [r for r in results if not r.genuine]
    return Report(
        calls=len(results),
        sockets=sum(r.sockets for r in results),
        frames_sent=sum(r.frames_sent for r in results),
        frames_processed=sum(r.frames_processed for r in results),
        frames_dropped=sum(r.dropped for r in results),
        verdicts_produced=len(verdicts),
        verdicts_persisted=len(persisted),
        decisions=dict(decisions),
        genuine_accepted=_share(genuine, "ACCEPT"),
        impostor_rejected=_share(impostors, "REJECT"),
        events_produced=len(produced),
        webhooks_delivered=len(delivered),
        webhooks_delivered_throwaway=len(webhook.received()) - len(delivered),
        webhook_posts=webhook.posts,
        webhook_refused=webhook.refused,
        webhook_bad_signatures=webhook.bad_signatures,
        dead_letters=None if dead_letters is None else len(dead_letters),
        faults=dict(tally.faults),
        malformed_outcomes={k: dict(v) for k, v in tally.outcomes.items()},
        errors=dict(tally.error_kinds),
        error_samples=list(tally.errors),
        lost={
            "verdicts not persisted": len(verdicts - persisted),
            "events not delivered nor dead-lettered": len(
                produced - delivered - (dead_letters or set())
            ),
            "events missed by SSE": len(produced - {e for r in results for e in r.events}),
            "frames not processed": sum(r.frames_sent - r.frames_processed for r in results),
        },
    )


def _share(results: Sequence[CallResult], decision: str) -> str:
    judged = [r for r in results if r.last_caller_decision is not None]
    hits = sum(r.last_caller_decision == decision for r in judged)
    return f"{hits}/{len(judged)}"


def read_dead_letters(service: Service) -> set[str] | None:
    """Event ids the service gave up delivering; None where it has no such route."""
    response = httpx.get(
        service.url + "/v1/webhooks/dead-letters",
        headers={"Authorization": f"Bearer {service.admin_key}"},
        timeout=30,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    body = response.json()
    rows = (
        next((v for v in body.values() if isinstance(v, list)), [])
        if isinstance(body, dict)
        else body
    )
    return {str(row.get("event_id") or row.get("id")) for row in rows if isinstance(row, dict)}
