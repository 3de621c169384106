"""One live call: its identity, its sockets (a reconnect continues the call), the parser
counters of all of them, the format its audio arrives in, and its participants, each a
:class:`~biometrics.streaming.participant.ParticipantStream`. No socket here: the endpoint
feeds parsed frames in. Runs on the event loop.

Every change is saved (the call's snapshot, queued to the store's writer thread) and
published as a typed event. When the last socket closes the call waits for the verdicts in
flight, judges any speech not judged yet, and ends (call.ended); a new socket for the same
call id resumes it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from biometrics.clock import utcnow
from biometrics.errors import TooManyParticipants
from biometrics.events.call_events import CallEnded, CallEvent, CallStarted, ParticipantJoined
from biometrics.snapshots import CallSummary, SpeakerClaim, StreamFormat
from biometrics.statuses import CallStatus
from biometrics.store.recordings import Recorder
from biometrics.streaming.identity import MIXED
from biometrics.streaming.participant import CallServices, ParticipantStream
from biometrics.streaming.protocol import AudioFormat, AudioFrame

logger = logging.getLogger(__name__)

FINISH_TIMEOUT_SECONDS = 30.0


class CallSession:
    """One call: its identity, sockets, counters and participants."""

    def __init__(
        self,
        call_id: str,
        *,
        services: CallServices,
        save: Callable[[CallSummary], None],
        publish: Callable[[CallEvent], None],
        max_participants: int,
    ) -> None:
        self.call_id = call_id
        self._services = services
        self._save = save
        self._publish = publish
        self.max_participants = max_participants
        self.correlation_id: str | None = None
        self.subscription_id: str | None = None
        self.status = CallStatus.PENDING
        self.created_at = utcnow()
        self.active_at = self.created_at  # last claim or socket change (memory retention)
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.sockets = 0  # connections so far
        self.open_sockets = 0
        self.audio_format: StreamFormat | None = None  # the latest socket's
        self.mixed: bool | None = None  # mixed or unmixed audio, once a frame said
        self.participants: dict[str, ParticipantStream] = {}
        self._counters: collections.Counter[str] = collections.Counter()  # closed sockets'
        self._live_counters: list[dict[str, int]] = []  # open sockets' parsers
        self._tasks: set[asyncio.Task[None]] = set()
        self.final_verdicts = 0  # verdicts made final because the service stopped
        # Whether to record the call: an admin's choice for it, or None for the service's.
        self.recording: bool | None = None
        self._recorders: dict[str, Recorder] = {}  # by raw id, while recording

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as a task of this call (kept referenced until done)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def busy(self) -> bool:
        """Verdicts, look-ups or enrollments are running for the call."""
        return bool(self._tasks)

    @property
    def idle(self) -> bool:
        return self.open_sockets == 0 and not self._tasks

    # --- sockets -----------------------------------------------------------------------------

    def report(self, event: CallEvent) -> None:
        """Save the call as it is now and publish ``event``: how every change leaves."""
        self._save(self.summary())
        self._publish(event)

    def save(self) -> None:
        self._save(self.summary())

    def connect(
        self, correlation_id: str | None, audio_format: AudioFormat, counters: dict[str, int]
    ) -> None:
        """A socket starts streaming this call (the first one, or a reconnect)."""
        self.active_at = utcnow()
        self.audio_format = StreamFormat(
            "PCM", audio_format.sample_rate, audio_format.channels, audio_format.frame_bytes, None
        )
        subscription_id = audio_format.subscription_id
        self.open_sockets += 1
        self.sockets += 1
        self._live_counters.append(counters)
        self.correlation_id = correlation_id or self.correlation_id
        self.subscription_id = subscription_id
        self.started_at = self.started_at or utcnow()
        self.ended_at = None
        if self.status is not CallStatus.ONGOING:
            self.status = CallStatus.ONGOING
            self.report(CallStarted(self.summary()))
        else:
            self.save()

    def feed(self, frame: AudioFrame, sample_rate: int) -> None:
        mixed = frame.participant_raw_id is None
        if not self._same_mode(mixed):
            self._drop("mode_change")
            return
        raw_id = MIXED if frame.participant_raw_id is None else frame.participant_raw_id
        participant = self.participants.get(raw_id)
        if participant is None or participant.joined_at is None:
            if participant is not None:
                participant.mixed = mixed  # claimed before its audio said what it is
            if participant is None and len(self.participants) >= self.max_participants:
                self._drop("participant_limit")
                return
            participant = self.participant(raw_id, mixed=mixed)
            participant.join()
            self.report(ParticipantJoined(self.call_id, participant.summary()))
        participant.feed(frame, sample_rate)
        self._record(raw_id, frame.pcm, sample_rate)

    def _drop(self, reason: str) -> None:
        """Count a frame the call itself dropped among the counters of the socket that
        streams it, beside the parser's drops, where /metrics reads them while the socket
        is open; the call's own counters take them in when it closes."""
        counters = self._live_counters[-1] if self._live_counters else self._counters
        key = f"dropped_{reason}"
        counters[key] = counters.get(key, 0) + 1

    def _same_mode(self, mixed: bool) -> bool:
        """A call's audio is mixed or unmixed for good: the first frame says which, so that
        a participant whose raw id is "mixed" never shares a stream with mixed audio."""
        if self.mixed is None:
            self.mixed = mixed
        return self.mixed is mixed

    # --- recording ---------------------------------------------------------------------------

    def _record(self, raw_id: str, pcm: bytes, sample_rate: int) -> None:
        """Keep the participant's audio as received when the call is recorded."""
        recordings = self._services.recordings
        if recordings is None:
            return
        recorder = self._recorders.get(raw_id)
        if recorder is None or recorder.sample_rate != sample_rate:
            if not recordings.wanted(self.recording):
                return
            if recorder is not None:  # a reconnect at another rate: a recording of its own
                recorder.finish(self.participants[raw_id].speaker_id)
            recorder = recordings.start(self.call_id, raw_id, sample_rate)
            self._recorders[raw_id] = recorder
        recorder.write(pcm)

    def set_recording(self, enabled: bool | None) -> None:
        """An admin chose to record the call, or not (None: as the service does); turned
        off, what was recorded so far is complete."""
        self.recording = enabled
        recordings = self._services.recordings
        if recordings is not None and not recordings.wanted(enabled):
            self._finish_recordings()

    def _finish_recordings(self) -> None:
        for raw_id, recorder in self._recorders.items():
            participant = self.participants.get(raw_id)
            recorder.finish(None if participant is None else participant.speaker_id)
        self._recorders.clear()

    async def disconnect(self, counters: dict[str, int], *, final: bool = False) -> bool:
        """A socket closed; when it was the last, judge what is left and end the call
        (with ``final``, the service is stopping: each participant's last verdict is
        final). Returns True when the call ended."""
        self.active_at = utcnow()
        self.open_sockets -= 1
        if any(live is counters for live in self._live_counters):
            self._live_counters = [live for live in self._live_counters if live is not counters]
        self._counters.update(counters)
        if self.open_sockets > 0:
            return False
        await self._settle()
        for participant in self.participants.values():
            judging = participant.wrap_up(final)
            if judging and final:
                self.final_verdicts += 1
        await self._settle()
        if self.open_sockets > 0:  # a reconnect came while the last verdicts were made
            return False
        self.status = CallStatus.ENDED
        self.ended_at = self.active_at = utcnow()
        self._finish_recordings()
        self.report(CallEnded(self.summary()))
        return True

    async def _settle(self) -> None:
        """Wait for the call's verdicts and enrollments in flight, however many follow."""
        deadline = asyncio.get_running_loop().time() + FINISH_TIMEOUT_SECONDS
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                logger.warning(
                    "a call ended with model work still running",
                    extra={"call_id": self.call_id, "tasks": len(self._tasks)},
                )
                return
            await asyncio.wait(set(self._tasks), timeout=remaining)

    def close(self) -> None:
        """Forget the call: cancel whatever still runs for it, and let its participants go.
        Each refers back to the call (its spawn and report), so unless they are dropped
        here an evicted call is cyclic garbage, its participants' speech buffers (640 KB
        each by default) resident until the collector's oldest generation runs, which in
        a process of this many objects is rare: bursts of calls grew the service by their
        buffers, round after round."""
        for task in list(self._tasks):
            task.cancel()
        self._finish_recordings()
        self.participants.clear()

    # --- participants ------------------------------------------------------------------------

    def participant(self, raw_id: str, *, mixed: bool = False) -> ParticipantStream:
        """The participant, created if new; raises TooManyParticipants at the limit."""
        participant = self.participants.get(raw_id)
        if participant is None:
            if len(self.participants) >= self.max_participants:
                raise TooManyParticipants(
                    f"call {self.call_id!r} already has {self.max_participants} participants "
                    "(BIOMETRICS_STREAM_MAX_PARTICIPANTS)"
                )
            participant = ParticipantStream(
                self.call_id,
                raw_id,
                mixed=mixed,
                services=self._services,
                spawn=self.spawn,
                report=self.report,
            )
            self.participants[raw_id] = participant
        return participant

    def claim(self, raw_id: str, claim: SpeakerClaim) -> ParticipantStream:
        """Claim a participant (known or not yet streaming); its first verdict follows."""
        self.active_at = utcnow()
        participant = self.participant(raw_id, mixed=self._mixed_stream(raw_id))
        participant.set_claim(claim)
        self.save()
        return participant

    def _mixed_stream(self, raw_id: str) -> bool:
        """Whether a participant not yet heard, named ``raw_id``, is the call's mixed audio."""
        return raw_id == MIXED and self.mixed is not False

    # --- views -------------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        total = collections.Counter(self._counters)
        for live in self._live_counters:
            total.update(live)
        return dict(total)

    def summary(self) -> CallSummary:
        return CallSummary(
            call_id=self.call_id,
            correlation_id=self.correlation_id,
            subscription_id=self.subscription_id,
            status=self.status,
            created_at=self.created_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            sockets=self.sockets,
            counters=self.counters,
            audio_format=None
            if self.audio_format is None
            else dataclasses.replace(self.audio_format, mixed=self.mixed),
            participants=tuple(p.summary() for p in self.participants.values()),
        )

    def restore(self, summary: CallSummary) -> None:
        self.correlation_id = summary.correlation_id
        self.subscription_id = summary.subscription_id
        # Stored as ONGOING: the process that streamed it stopped; no socket is open now.
        ongoing = summary.status is CallStatus.ONGOING
        self.status = CallStatus.ENDED if ongoing else summary.status
        self.created_at = summary.created_at
        self.started_at = summary.started_at
        self.ended_at = summary.ended_at
        self.sockets = summary.sockets
        self.audio_format = summary.audio_format
        self.mixed = None if summary.audio_format is None else summary.audio_format.mixed
        self._counters = collections.Counter(summary.counters)
        for stored in summary.participants:
            self.participant(stored.raw_id, mixed=stored.mixed).restore(stored)
