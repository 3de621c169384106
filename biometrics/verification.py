"""The verification service: the one place that turns a claim and speech into a verdict, for
``POST /v1/verify`` and for every verdict of a live call alike.

In: who is claimed (and the threshold, if the caller set one), speech that was already
found by a speech detector (:class:`~biometrics.audio.DetectedSpeech`), and for a live call
whose speech it is. It reads the claimed speaker from the store, climbs the decision
ladder (:func:`biometrics.scoring.rule`), embeds and scores only when the ladder reaches
the score, records the verdict in the history, and hands it to the audit hook (with who
asked, for a REST verdict). Streaming only decides *when* to ask.

Through a database outage live calls keep their verdicts: the service remembers the last
claim it read for each speaker (:class:`RecentClaims`), and when the claim cannot be read
because the database is unreachable, and only then, a live verdict is judged on the one
remembered, lockout included as it was then. A speaker never read before gets an unscored
REJECT saying why, and the next step of speech tries again. ``POST /v1/verify`` never uses
what is remembered: it fails with :class:`~biometrics.store.database.DatabaseUnavailable`
(503). The verdict is published at once either way; the history and the audit trail write
it when the database is back (:mod:`biometrics.store.spool`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from biometrics.audio import DetectedSpeech
from biometrics.audio.decode import Samples
from biometrics.clock import utcnow
from biometrics.embedding import EmbeddingWorker, Urgency
from biometrics.embedding.incremental import IncrementalEmbedding
from biometrics.embedding.pooling import SpeechEmbedding
from biometrics.metrics import Metrics
from biometrics.scoring import TrialFacts, decide, rule
from biometrics.scoring.scorer import Scorer
from biometrics.statuses import Decision
from biometrics.store import Database, queries
from biometrics.store.audit import SERVICE, AuditLog, Origin
from biometrics.store.crypto import Cipher
from biometrics.store.database import DatabaseUnavailable, is_unavailable
from biometrics.store.lifecycle import NO_EXPIRY, SpeakerExpiry
from biometrics.store.verdicts import VerdictHistory, failures_since
from biometrics.verdicts import CallParticipantRef, Verdict, new_verdict_id

audit_logger = logging.getLogger("biometrics.audit")
logger = logging.getLogger(__name__)

RECENT_CLAIMS = 10_000  # speakers whose last read claim is remembered for an outage

# Blocking: the service calls it from a worker thread.
Audit = Callable[[Verdict, Origin | None], None]


def log_verdict(verdict: Verdict, origin: Origin | None = None) -> None:
    """The audit hook of a service built without an audit trail: one structured line per
    verdict."""
    participant = verdict.participant
    audit_logger.info(
        "verdict",
        extra={
            "verdict_id": verdict.verdict_id,
            "speaker_id": verdict.speaker_id,
            "decision": verdict.decision.value,
            "score": verdict.score,
            "source": "rest" if participant is None else "call",
            "call_id": None if participant is None else participant.call_id,
            "actor": SERVICE if origin is None else origin.actor,
        },
    )


class VerdictAudit:
    """The service's audit hook: the log line, and a row in the audit trail, which keeps
    the decision but not the score. A REST verdict is ``speaker.verify`` by whoever asked;
    a live call's is ``call.verdict`` by the service, naming the call and participant."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def __call__(self, verdict: Verdict, origin: Origin | None) -> None:
        log_verdict(verdict, origin)
        participant = verdict.participant
        self._log.record(
            origin or Origin(SERVICE),
            "speaker.verify" if participant is None else "call.verdict",
            verdict.speaker_id,
            verdict.decision.value,
            call_id=None if participant is None else participant.call_id,
            participant_raw_id=None if participant is None else participant.participant_raw_id,
        )


@dataclasses.dataclass(frozen=True)
class VerificationPolicy:
    min_speech_seconds: float  # net speech before anything is scored
    min_snr_db: float  # the quality gate
    max_clipping_ratio: float
    # Brute force: after this many failed (scored, rejected) verifications of one speaker
    # within the window, none is judged until the oldest of them leaves it. 0: never.
    lockout_failures: int = 0
    lockout_window_seconds: float = 900.0
    expiry: SpeakerExpiry = NO_EXPIRY  # speakers unused too long are SPEAKER_EXPIRED


@dataclasses.dataclass(frozen=True)
class LiveSpeech:
    """Where a live verdict's speech came from, and whether the schedule ends with it."""

    participant: CallParticipantRef
    first_audio_at: datetime | None
    last_audio_at: datetime | None
    final: bool
    # The participant's speech embedded so far (BIOMETRICS_LIVE_EMBEDDING=incremental):
    # only the speech after it is embedded, and it is brought up to date. None: all of it.
    embedded: IncrementalEmbedding | None = None


@dataclasses.dataclass(frozen=True)
class _Claimed:
    facts: TrialFacts
    voiceprint: npt.NDArray[np.float32] | None
    unavailable: str | None = None  # why nothing could be judged: the database is away


@dataclasses.dataclass(frozen=True)
class _Read:
    stored: queries.StoredClaim
    locked_until: datetime | None


class RecentClaims:
    """The claims read last, least recently used dropped past ``size``; thread-safe. Only
    a database outage reads them, so a change in the database (a deletion, an opt-out, a
    new voiceprint) counts from the first verdict after it; the routes that delete or
    withdraw a voiceprint also forget it here at once."""

    def __init__(self, size: int = RECENT_CLAIMS) -> None:
        self._size = size
        self._claims: collections.OrderedDict[str, _Read] = collections.OrderedDict()
        self._lock = threading.Lock()

    def remember(self, speaker_id: str, read: _Read | None) -> None:
        with self._lock:
            if read is None:
                self._claims.pop(speaker_id, None)
                return
            self._claims[speaker_id] = read
            self._claims.move_to_end(speaker_id)
            if len(self._claims) > self._size:
                self._claims.popitem(last=False)

    def recall(self, speaker_id: str) -> _Read | None:
        with self._lock:
            read = self._claims.get(speaker_id)
            if read is not None:
                self._claims.move_to_end(speaker_id)
            return read

    def forget(self, speaker_id: str) -> None:
        self.remember(speaker_id, None)


class VerificationService:
    def __init__(
        self,
        database: Database,
        cipher: Cipher,
        worker: EmbeddingWorker,
        scorer: Scorer,
        policy: VerificationPolicy,
        history: VerdictHistory,
        audit: Audit = log_verdict,
        claims: RecentClaims | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._database = database
        self._cipher = cipher
        self._worker = worker
        self.scorer = scorer
        self._policy = policy
        self._history = history
        self._audit = audit
        self.claims = RecentClaims() if claims is None else claims
        self._metrics = metrics

    async def verify(
        self,
        speaker_id: str | None,
        speech: DetectedSpeech,
        *,
        threshold: float | None = None,
        live: LiveSpeech | None = None,
        origin: Origin | None = None,
    ) -> Verdict:
        started = time.monotonic()
        quality = speech.quality.gate(self._policy.min_snr_db, self._policy.max_clipping_ratio)
        claimed = await run_in_threadpool(
            self._claimed, speaker_id, speech, quality.issues, live is not None
        )
        if speaker_id is not None and threshold is None:
            threshold = self.scorer.default_threshold
        verdict = Verdict(
            verdict_id=new_verdict_id(),
            speaker_id=speaker_id,
            decision=Decision.SPEAKER_ID_NOT_PROVIDED,
            score=None,
            similarity=None,
            normalized_score=None,
            threshold=threshold,
            calibrated=self.scorer.calibrated,
            speech_seconds=speech.speech_seconds,
            quality=quality,
            model=self._worker.identity,
            detail=None,
            created_at=utcnow(),
            participant=None if live is None else live.participant,
            first_audio_at=None if live is None else live.first_audio_at,
            last_audio_at=None if live is None else live.last_audio_at,
            final=True if live is None else live.final,
        )
        ruling = rule(claimed.facts, self._policy.min_speech_seconds)
        if claimed.unavailable is not None:
            verdict = dataclasses.replace(
                verdict, decision=Decision.REJECT, detail=claimed.unavailable
            )
        elif ruling is not None:
            verdict = dataclasses.replace(
                verdict,
                decision=ruling.decision,
                detail=ruling.detail,
                locked_until=ruling.locked_until,
            )
        else:
            assert claimed.voiceprint is not None and threshold is not None
            embedding = await self._embed(speech.samples, live)
            trial = self.scorer.score(claimed.voiceprint, embedding.vector, speech.speech_seconds)
            verdict = dataclasses.replace(
                verdict,
                decision=decide(trial.score, threshold),
                score=trial.score,
                similarity=trial.similarity,
                normalized_score=trial.normalized,
                calibrated=trial.calibrated,
                detail=embedding.delay,
                created_at=utcnow(),
            )
        await run_in_threadpool(self._history.record, verdict)
        await run_in_threadpool(self._audit, verdict, origin)
        if self._metrics is not None:
            source = "rest" if live is None else "call"
            self._metrics.verdict(verdict.decision.value, source, time.monotonic() - started)
        return verdict

    async def _embed(self, samples: Samples, live: LiveSpeech | None) -> SpeechEmbedding:
        """All the speech, or for a live call that keeps its embedding, only what it adds."""
        urgency = Urgency.REST if live is None else Urgency.LIVE
        embedded = None if live is None else live.embedded
        if embedded is None:
            return await self._worker.embed_speech(samples, urgency=urgency)
        start = embedded.start(len(samples))
        new = None
        if start < len(samples):
            new = await self._worker.embed_speech(samples[start:], urgency=urgency)
        pooled = embedded.add(new, start, len(samples))
        # Only this verdict's own wait counts: the pooled vector carries no delay of its own.
        return dataclasses.replace(pooled, delay=None if new is None else new.delay)

    def _claimed(
        self, speaker_id: str | None, speech: DetectedSpeech, issues: tuple[str, ...], live: bool
    ) -> _Claimed:
        """Blocking: what the store knows of the claim, as the ladder's facts; for a live
        verdict while the database is unreachable, what it knew last."""
        stored = None
        locked_until = None
        unavailable = None
        if speaker_id is not None:
            try:
                read = self._read_claim(speaker_id)
            except Exception as error:
                if not is_unavailable(error):
                    raise
                if not live:
                    raise DatabaseUnavailable(
                        f"the database is unreachable: speaker {speaker_id!r} cannot be "
                        "verified now; try again shortly"
                    ) from None
                read = self.claims.recall(speaker_id)
                logger.warning(
                    "database unreachable: a live verdict uses the claim read last",
                    extra={"speaker_id": speaker_id, "remembered": read is not None},
                )
                if read is None:
                    unavailable = (
                        f"the database is unreachable and speaker {speaker_id!r} was not "
                        "read lately: not judged; the next step of speech tries again"
                    )
            if read is not None:
                stored, locked_until = read.stored, read.locked_until
                if locked_until is not None and locked_until <= utcnow():
                    locked_until = None  # a remembered lockout that has run out since
        sha256 = None if stored is None else stored.voiceprint_sha256
        facts = TrialFacts(
            speaker_id=speaker_id,
            status=None if stored is None else stored.status,
            has_voiceprint=stored is not None and stored.voiceprint is not None,
            expired=stored is not None
            and self._policy.expiry.expired(
                stored.status, stored.expires_at, stored.last_used_at, utcnow()
            ),
            speech_seconds=speech.speech_seconds,
            quality_issues=issues,
            voiceprint_model=None if stored is None else stored.voiceprint_model,
            model_compatible=sha256 is not None and self._worker.identity.compatible_with(sha256),
            locked_until=locked_until,
        )
        return _Claimed(facts, None if stored is None else stored.voiceprint, unavailable)

    def _read_claim(self, speaker_id: str) -> _Read | None:
        """Blocking: the claim and its lockout as the database has them now, remembered."""
        with self._database.session() as session:
            stored = queries.load_claim(session, self._cipher, speaker_id)
            read = None
            if stored is not None:
                read = _Read(stored, self._locked_until(session, speaker_id, stored))
        self.claims.remember(speaker_id, read)
        return read

    def _locked_until(
        self, session: Session, speaker_id: str, stored: queries.StoredClaim
    ) -> datetime | None:
        """When a lockout of the speaker ends, if one is on: ``lockout_failures`` failed
        attempts in the window since their latest success or an admin's clearing."""
        needed = self._policy.lockout_failures
        if needed < 1:
            return None
        window = timedelta(seconds=self._policy.lockout_window_seconds)
        now = utcnow()
        since = now - window
        if stored.lockout_cleared_at is not None:
            since = max(since, stored.lockout_cleared_at)
        failures = failures_since(session, speaker_id, since)
        if len(failures) < needed:
            return None
        return failures[needed - 1] + window
