"""One participant of a live call: its audio turned into speech, its claim, its verdicts and
its enrollment. No socket, model or database here: it is handed its collaborators when it
is made (:class:`CallServices` for the work, ``spawn`` and ``report`` from its call).

Per 20 ms frame it resamples, runs its own speech detector, measures quality and copies
speech into fixed-size buffers: cheap enough for the event loop. Verdicts, the alias
look-up and enrollments run as tasks, at most one verdict and one enrollment in flight, so
the socket's receive loop never waits for the model; a verdict whose claim changed
meanwhile is dropped. *What* a verdict says is the verification service's business; the
participant decides only *when* to ask (:class:`~biometrics.streaming.schedule.DecisionSchedule`).

Memory is bounded whatever the call's length: the decision window holds at most the
maximum decision speech (it takes no more once full, which is when the final verdict is
due), and an enrollment from the call at most one chunk of the same size.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from biometrics.audio import DetectedSpeech
from biometrics.audio.buffers import SpeechBuffer
from biometrics.audio.framing import FRAME_SECONDS, PcmFramer, frames_for
from biometrics.audio.quality import QualityMeter
from biometrics.audio.speech import SpeechDetector, SpeechFilter
from biometrics.clock import utcnow
from biometrics.embedding.incremental import IncrementalEmbedding
from biometrics.enrollment import MIN_UPLOAD_SPEECH_SECONDS, EnrollmentResult
from biometrics.errors import (
    BiometricsError,
    EnrollmentInProgress,
    InvalidRequest,
    ModelMismatch,
    SpeakerOptedOut,
)
from biometrics.events.call_events import CallEvent, EnrollmentChanged, VerdictChanged
from biometrics.logs import log_context
from biometrics.snapshots import EnrollmentProgress, ParticipantSummary, SpeakerClaim
from biometrics.statuses import SpeakerStatus
from biometrics.store.database import is_unavailable
from biometrics.store.recordings import Recordings
from biometrics.streaming.protocol import AudioFrame
from biometrics.streaming.schedule import DecisionSchedule
from biometrics.verdicts import CallParticipantRef, Verdict
from biometrics.verification import LiveSpeech

logger = logging.getLogger(__name__)

# Enrollment uploads need 1 s of speech; a little more here keeps a chunk of bridged
# speech from falling just short of it.
MIN_ENROLL_CHUNK_FRAMES = frames_for(MIN_UPLOAD_SPEECH_SECONDS + 0.5)
MAX_ENROLL_FAILURES = 3


class Verifier(Protocol):
    async def verify(
        self,
        speaker_id: str | None,
        speech: DetectedSpeech,
        *,
        threshold: float | None = None,
        live: LiveSpeech | None = None,
    ) -> Verdict: ...


class Enroller(Protocol):
    async def enroll(
        self, speaker_id: str, speech: DetectedSpeech, *, replace: bool = False
    ) -> EnrollmentResult: ...


@dataclasses.dataclass(frozen=True)
class CallServices:
    """The work a live call asks of the service: verdicts, enrollment, alias look-ups."""

    verifier: Verifier
    enroller: Enroller
    find_alias: Callable[[str], Awaitable[str | None]]  # raw id -> speaker id
    schedule: DecisionSchedule
    new_detector: Callable[[], SpeechDetector] = SpeechDetector
    # Each verdict embeds only the speech since the last one and pools it with the
    # embedding so far, instead of re-embedding the window (BIOMETRICS_LIVE_EMBEDDING).
    incremental_embedding: bool = False
    # Keeps participants' audio when the call is recorded (BIOMETRICS_RECORDINGS or the
    # call's own setting); None: never recorded.
    recordings: Recordings | None = None


Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
Report = Callable[[CallEvent], None]


class ParticipantStream:
    """One participant's audio, speech, claim, verdicts and enrollment."""

    def __init__(
        self,
        call_id: str,
        raw_id: str,
        *,
        mixed: bool,
        services: CallServices,
        spawn: Spawn,
        report: Report,
    ) -> None:
        self.call_id = call_id
        self.raw_id = raw_id
        self.mixed = mixed  # the call's mixed audio: every voice at once
        self._services = services
        self._schedule = services.schedule
        self._spawn = spawn
        self._report = report
        self.joined_at: datetime | None = None
        self.first_frame_at: datetime | None = None
        self.last_frame_at: datetime | None = None
        self.frames = 0
        self.speech_frames = 0
        self.claim: SpeakerClaim | None = None
        self.latest: Verdict | None = None
        self.enrollment: EnrollmentProgress | None = None
        self._framer: PcmFramer | None = None
        self._speech = SpeechFilter(services.new_detector())  # its own: the VAD adapts
        self._window = SpeechBuffer(self._schedule.max_frames)
        self._quality = QualityMeter()  # of the audio the window's speech came from
        self._claim_generation = 0
        self._stale = False  # a verdict is due whatever the speech: new claim, or joined
        self._evaluated: int | None = None  # speech frames of the last verdict on this claim
        self._embedded: IncrementalEmbedding | None = None  # of this claim's window so far
        self._judging: asyncio.Task[None] | None = None
        self._enroll_buffer: SpeechBuffer | None = None
        self._enrolling: asyncio.Task[None] | None = None
        self._enroll_failures = 0

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as a task of the call whose log lines name this participant and its
        call, whoever asked for it (the socket's frames, or a claim over REST)."""
        with log_context(call_id=self.call_id, participant=self.raw_id):
            return self._spawn(work)

    # --- audio -------------------------------------------------------------------------------

    def join(self) -> None:
        """The first frame arrived: find who it is by alias unless someone claimed already."""
        self.joined_at = utcnow()
        if self.claim is not None:
            return
        if self.mixed:
            self._stale = True  # nobody to look up: say that no claim was made
        else:
            self._start(self._claim_by_alias())

    def feed(self, frame: AudioFrame, sample_rate: int) -> None:
        if self._framer is None or self._framer.sample_rate != sample_rate:
            self._framer = PcmFramer(sample_rate)
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = frame.timestamp
        self.last_frame_at = frame.timestamp
        heard_until = frame.timestamp + timedelta(seconds=len(frame.pcm) / (2 * sample_rate))
        for piece in self._framer.frames(frame.pcm):
            for decided, is_speech in self._speech.push(piece, silent=frame.silent):
                self._keep(decided, is_speech, frame.timestamp, heard_until)
        self._dispatch()

    def _keep(
        self, frame: npt.NDArray[np.float32], is_speech: bool, heard: datetime, until: datetime
    ) -> None:
        if not self._window.full:
            self._quality.add(frame, is_speech)
        if not is_speech:
            return
        self.speech_frames += 1
        self._window.append(frame, heard, until)
        if self._enroll_buffer is not None:
            self._enroll_buffer.append(frame, heard, until)

    @property
    def speech_seconds(self) -> float:
        return self.speech_frames * FRAME_SECONDS

    @property
    def window_frames(self) -> int:
        return self._window.frames

    # --- claims and verdicts -----------------------------------------------------------------

    def set_claim(self, claim: SpeakerClaim) -> None:
        """Judge this participant as ``claim`` from now on, starting with a verdict at once
        (on the speech buffered so far); a verdict in flight on an earlier claim is dropped."""
        self.claim = claim
        self._claim_generation += 1
        self._evaluated = None
        self._embedded = self._new_embedding()
        self._stale = True
        self._dispatch()

    def _new_embedding(self) -> IncrementalEmbedding | None:
        """What a claim's verdicts keep of the window embedded so far: a new claim starts
        from nothing, so that no embedding outlives the claim it was made for."""
        return IncrementalEmbedding() if self._services.incremental_embedding else None

    def _due(self) -> bool:
        if self._judging is not None:
            return False
        if self._stale:
            return True
        if self.claim is None or self._evaluated is None:
            return False
        due = self._schedule.next_due(self._evaluated)
        return due is not None and self._window.frames >= due

    def _start_judging(self, final: bool = False) -> None:
        self._stale = False
        frames = self._window.frames
        speech = DetectedSpeech(
            self._window.speech(), self._quality.measure(), self._quality.audio_seconds
        )
        live = LiveSpeech(
            participant=CallParticipantRef(self.call_id, self.raw_id),
            first_audio_at=self._window.first_at,
            last_audio_at=self._window.last_at,
            final=final or self._schedule.is_final(frames),
            embedded=self._embedded,
        )
        self._judging = self._start(
            self._judge(self.claim, speech, live, frames, self._claim_generation)
        )

    async def _judge(
        self,
        claim: SpeakerClaim | None,
        speech: DetectedSpeech,
        live: LiveSpeech,
        frames: int,
        generation: int,
    ) -> None:
        verdict: Verdict | None = None
        try:
            verdict = await self._services.verifier.verify(
                None if claim is None else claim.speaker_id,
                speech,
                threshold=None if claim is None else claim.threshold,
                live=live,
            )
        except Exception:
            logger.exception(
                "a live verdict failed; the next step of speech tries again",
            )
        self._judging = None
        if generation == self._claim_generation:  # else the claim changed: judge again
            self._evaluated = frames
            if verdict is not None and not verdict.same_outcome(self.latest):
                self.latest = verdict
                self._report(VerdictChanged(self.call_id, self.raw_id, verdict))
        self._dispatch()

    async def _claim_by_alias(self) -> None:
        speaker_id = None
        try:
            speaker_id = await self._services.find_alias(self.raw_id)
        except Exception as error:
            away = is_unavailable(error)  # expected in an outage: no traceback
            logger.log(
                logging.WARNING if away else logging.ERROR,
                "alias look-up failed; the participant stays unclaimed",
                exc_info=not away,
            )
        if self.claim is not None:
            return  # claimed through the API meanwhile: that claim wins
        if speaker_id is not None:
            logger.info(
                "participant claimed by alias",
                extra={"speaker_id": speaker_id},
            )
            self.set_claim(SpeakerClaim(speaker_id, None, "alias"))
        else:
            self._stale = True
            self._dispatch()

    # --- enrollment --------------------------------------------------------------------------

    def start_enrollment(self, speaker_id: str) -> asyncio.Task[None] | None:
        """Enroll ``speaker_id`` from this participant's speech so far (the decision window)
        and from each chunk of speech after it, until the speaker is ENROLLED. Returns the
        task enrolling the speech so far, or None if there is too little yet."""
        if self.mixed:
            raise InvalidRequest(
                "mixed audio holds every speaker's voice and would enroll all of them: "
                "enroll from an unmixed call (audioChannelType unmixed)"
            )
        current = self.enrollment
        if current is not None and current.active:
            if current.speaker_id != speaker_id:
                raise EnrollmentInProgress(
                    f"participant {self.raw_id!r} is enrolling speaker "
                    f"{current.speaker_id!r}; wait until it is ENROLLED"
                )
            return self._enrolling
        self.enrollment = EnrollmentProgress(speaker_id)
        self._enroll_failures = 0
        self._enroll_buffer = SpeechBuffer(self._schedule.max_frames)
        self._report_enrollment()
        if self._window.frames < MIN_ENROLL_CHUNK_FRAMES or self._enrolling is not None:
            return None
        return self._start_enrolling(self._window)

    def _enroll_due(self) -> bool:
        return (
            self._enrolling is None
            and self._enroll_buffer is not None
            and self._enroll_buffer.full
            and self.enrollment is not None
            and self.enrollment.active
        )

    def _take_enroll_chunk(self) -> asyncio.Task[None]:
        assert self._enroll_buffer is not None
        task = self._start_enrolling(self._enroll_buffer)
        self._enroll_buffer.clear()
        return task

    def _start_enrolling(self, buffer: SpeechBuffer) -> asyncio.Task[None]:
        samples = buffer.speech()
        quality = QualityMeter()
        quality.add_frames(samples.reshape(buffer.frames, -1), np.ones(buffer.frames, dtype=bool))
        speech = DetectedSpeech(samples, quality.measure(), buffer.speech_seconds)
        self._enrolling = self._start(self._enroll(speech))
        return self._enrolling

    async def _enroll(self, speech: DetectedSpeech) -> None:
        progress = self.enrollment
        assert progress is not None
        try:
            result = await self._services.enroller.enroll(progress.speaker_id, speech)
        except (SpeakerOptedOut, ModelMismatch) as error:
            status = "OPTED_OUT" if isinstance(error, SpeakerOptedOut) else progress.status
            progress = dataclasses.replace(
                progress, status=status, active=False, detail=error.detail
            )
        except Exception as error:
            self._enroll_failures += 1
            logger.log(
                logging.WARNING if isinstance(error, BiometricsError) else logging.ERROR,
                "enrolling from a live call failed",
                exc_info=not isinstance(error, BiometricsError),
            )
            if self._enroll_failures >= MAX_ENROLL_FAILURES:
                progress = dataclasses.replace(
                    progress,
                    active=False,
                    detail=f"enrollment stopped after {MAX_ENROLL_FAILURES} failures in a "
                    "row; see the service log",
                )
        else:
            self._enroll_failures = 0
            enrolled = result.status is SpeakerStatus.ENROLLED
            progress = dataclasses.replace(
                progress,
                status=result.status.value,
                enrolled_speech_seconds=result.enrolled_speech_seconds,
                remaining_speech_seconds=result.remaining_speech_seconds,
                call_speech_seconds=progress.call_speech_seconds + result.speech_seconds,
                active=not enrolled,
            )
        self._enrolling = None
        if self.enrollment is not None and self.enrollment.speaker_id == progress.speaker_id:
            self.enrollment = progress
            if not progress.active:
                self._enroll_buffer = None  # nothing more to collect
            self._report_enrollment()
        self._dispatch()

    def _report_enrollment(self) -> None:
        assert self.enrollment is not None
        self._report(EnrollmentChanged(self.call_id, self.raw_id, self.enrollment))

    # --- scheduling --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._due():
            self._start_judging()
        if self._enroll_due():
            self._take_enroll_chunk()

    def wrap_up(self, final: bool = False) -> bool:
        """The call's last socket closed: judge any speech not judged yet, and enroll any
        speech left over, so that what was heard is used. With ``final`` (the service is
        stopping, so the call cannot go on) that verdict is final, and one is made on the
        speech already judged too unless the latest is final already; under the minimum
        speech the latest verdict stands. True when a verdict was started."""
        judging = False
        if self._judging is None and self.claim is not None and self._evaluated is not None:
            heard = self._window.frames
            unjudged = heard > self._evaluated
            unfinished = final and (self.latest is None or not self.latest.final)
            if (unjudged or unfinished) and self._schedule.enough(heard):
                self._start_judging(final)
                judging = True
        buffer = self._enroll_buffer
        if (
            self._enrolling is None
            and buffer is not None
            and buffer.frames >= MIN_ENROLL_CHUNK_FRAMES
            and self.enrollment is not None
        ):
            self._take_enroll_chunk()
        return judging

    # --- views -------------------------------------------------------------------------------

    @property
    def speaker_id(self) -> str | None:
        """Whom the participant is taken for: its claim, else whom it enrolls as."""
        if self.claim is not None:
            return self.claim.speaker_id
        return None if self.enrollment is None else self.enrollment.speaker_id

    def summary(self) -> ParticipantSummary:
        return ParticipantSummary(
            raw_id=self.raw_id,
            mixed=self.mixed,
            joined_at=self.joined_at,
            first_frame_at=self.first_frame_at,
            last_frame_at=self.last_frame_at,
            frames=self.frames,
            speech_seconds=self.speech_seconds,
            claim=self.claim,
            latest_verdict=self.latest,
            enrollment=self.enrollment,
        )

    def restore(self, summary: ParticipantSummary) -> None:
        """Resume from a stored summary (the call was evicted from memory). Speech is never
        stored, so the decision window starts empty; a claim judged final stays final."""
        self.joined_at = summary.joined_at
        self.first_frame_at = summary.first_frame_at
        self.last_frame_at = summary.last_frame_at
        self.frames = summary.frames
        self.speech_frames = round(summary.speech_seconds / FRAME_SECONDS)
        self.claim = summary.claim
        self.latest = summary.latest_verdict
        if self.claim is not None:
            final = self.latest is not None and self.latest.final
            self._evaluated = self._schedule.max_frames if final else 0
            self._embedded = self._new_embedding()
        self.enrollment = summary.enrollment
        if self.enrollment is not None and self.enrollment.active:
            self._enroll_buffer = SpeechBuffer(self._schedule.max_frames)
