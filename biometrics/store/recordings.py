"""Call recordings, opt-in: each participant's audio as received, kept in sealed files
beside an index row (:class:`~biometrics.store.models.CallRecording`).

**What is kept.** Every frame a participant sends (speech, silence, noise): the PCM exactly
as received (``<id>.raw``, s16le mono at the call's rate) and, when that rate is not
16 kHz, the same audio resampled to 16 kHz (``<id>.16k``); a 16 kHz call's raw track is its
16 kHz track. Downloads serve the 16 kHz samples as a WAV, or the raw PCM.

**Sealed.** Each recording has a data key of its own (AES-256-GCM), sealed under the
voiceprint key into its index row, so that rotating the voiceprint key re-seals one small
row per recording instead of rewriting its audio, and deleting the row leaves its files
unreadable even before they are unlinked. A file is ``MAGIC`` then chunks, each
``final (1 byte) || length (4 bytes, LE) || nonce || ciphertext || tag``; the associated
data binds a chunk to its recording, track, position and finality, so that chunks moved,
swapped, dropped or cut off at the end do not open.

**Written off the event loop.** The call hands each second of audio to one writer thread
(:class:`RecordingWriter`) and goes on. Audio waiting for a slow disk is bounded
(``max_pending_bytes`` over all calls): past it a chunk is dropped, counted in its row and
logged, so that a stalled disk costs recordings, never calls. A write that fails (a full
or missing disk) is logged, marks that recording failed and leaves the call alone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import queue
import secrets
import struct
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from biometrics.clock import utcnow
from biometrics.errors import RecordingInProgress, RecordingNotFound, RecordingUnreadable
from biometrics.store.crypto import KEY_BYTES, NONCE_BYTES, Cipher
from biometrics.store.database import Database
from biometrics.store.models import CallRecording, CallRecordingSetting, VerdictRecord

logger = logging.getLogger(__name__)

MAGIC = b"biometrics recording v1\n"
WAV_RATE = 16_000
CHUNK_SECONDS = 1.0  # audio per sealed chunk: the unit of buffering and of dropping
RAW, WIDE = "raw", "16k"  # the tracks' file suffixes
RECORDING, COMPLETE, FAILED = "recording", "complete", "failed"
_HEADER = struct.Struct("<BI")
_MAX_CHUNK = 16 * 1024 * 1024  # a length above it is damage, not audio
_CLOSE_SECONDS = 30.0


def recording_key_aad(recording_id: str) -> bytes:
    """What a recording's data key is bound to: its recording."""
    return json.dumps(["recording", recording_id]).encode()


def _chunk_aad(recording_id: str, track: str, index: int, final: bool) -> bytes:
    return json.dumps(["recording chunk", recording_id, track, index, final]).encode()


class RecordingFiles:
    """The folder of sealed recordings."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, recording_id: str, track: str) -> Path:
        return self.folder / f"{recording_id}.{track}"

    def remove(self, recording_ids: Sequence[str]) -> None:
        """Unlink the recordings' files; one already gone is no error, one that cannot be
        unlinked is logged (its row is gone, so its data key is: it cannot be opened)."""
        for recording_id in recording_ids:
            for track in (RAW, WIDE):
                try:
                    self.path(recording_id, track).unlink(missing_ok=True)
                except OSError as error:
                    logger.error(
                        "could not remove a deleted recording's file",
                        extra={"recording_id": recording_id, "error": str(error)},
                    )


class _TrackWriter:
    """One sealed file being written, chunk by chunk."""

    def __init__(self, path: Path, aead: AESGCM, recording_id: str, track: str) -> None:
        self._aead, self._recording_id, self._track = aead, recording_id, track
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO = os.fdopen(descriptor, "wb")
        self._file.write(MAGIC)
        self._index = 0
        self.bytes = 0

    def write(self, data: bytes, *, final: bool = False) -> None:
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = _chunk_aad(self._recording_id, self._track, self._index, final)
        sealed = nonce + self._aead.encrypt(nonce, data, aad)
        self._file.write(_HEADER.pack(final, len(sealed)) + sealed)
        self._file.flush()  # in the kernel's hands: a crashed process loses no more
        self._index += 1
        self.bytes += len(data)

    def finish(self) -> None:
        self.write(b"", final=True)
        os.fsync(self._file.fileno())
        self._file.close()

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


def read_track(path: Path, aead: AESGCM, recording_id: str, track: str) -> Iterator[bytes]:
    """The plaintext chunks of a finished track; :class:`RecordingUnreadable` if it is
    missing, altered or cut short."""
    what = f"recording {recording_id} ({path.name})"
    try:
        file = path.open("rb")
    except OSError as error:
        raise RecordingUnreadable(f"{what} cannot be read: {error.strerror or error}") from None
    with file:
        if file.read(len(MAGIC)) != MAGIC:
            raise RecordingUnreadable(f"{what} is not a sealed recording")
        index = 0
        while True:
            header = file.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise RecordingUnreadable(f"{what} ends before its last chunk: it was cut short")
            final, length = _HEADER.unpack(header)
            sealed = file.read(length) if length <= _MAX_CHUNK else b""
            if len(sealed) != length or length <= NONCE_BYTES:
                raise RecordingUnreadable(f"{what} has a damaged chunk {index}")
            aad = _chunk_aad(recording_id, track, index, bool(final))
            try:
                yield aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
            except InvalidTag:
                raise RecordingUnreadable(
                    f"{what}: chunk {index} does not decrypt; it was altered or moved"
                ) from None
            if final:
                return
            index += 1


class RecordingWriter:
    """The one thread that does every recording's disk and database work, in order, and
    the bound on the audio waiting for it."""

    def __init__(self, max_pending_bytes: int) -> None:
        self._max_pending = max_pending_bytes
        self._pending = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], None], int] | None] = queue.SimpleQueue()
        # Started by the first work: a service that records nothing runs no thread.
        self._thread = threading.Thread(target=self._run, name="recordings", daemon=True)

    def submit(self, work: Callable[[], None], size: int = 0) -> bool:
        """Queue ``work`` holding ``size`` bytes of audio; False (nothing queued) when that
        would take the audio waiting past the bound. Work without audio always queues."""
        with self._lock:
            if size and self._pending + size > self._max_pending:
                return False
            self._pending += size
            if self._thread.ident is None:
                self._thread.start()
        self._queue.put((work, size))
        return True

    def close(self, timeout: float = _CLOSE_SECONDS) -> None:
        """Finish the work queued so far (blocking), then stop the thread."""
        if self._thread.ident is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("call recordings were still being written when the service stopped")

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            work, size = item
            try:
                work()
            except Exception:
                logger.exception("call recording work failed")
            finally:
                with self._lock:
                    self._pending -= size


@dataclasses.dataclass(frozen=True)
class Ending:
    """How a recording ended: whom its participant was taken for, what it holds, and why
    it failed, if it did."""

    speaker_id: str | None
    raw_bytes: int
    wav_bytes: int  # of 16 kHz samples
    dropped_bytes: int
    problem: str | None


class _Segment:
    """The writer thread's side of one recording: its row, files and resampler."""

    def __init__(self, recordings: Recordings, call_id: str, raw_id: str, sample_rate: int) -> None:
        self._recordings = recordings
        self.recording_id = str(uuid.uuid4())
        self.call_id, self.raw_id, self.sample_rate = call_id, raw_id, sample_rate
        self._tracks: list[_TrackWriter] = []
        self._resampler: soxr.ResampleStream | None = None
        self._problem: str | None = None

    def open(self) -> None:
        try:
            aead = self._recordings.new_row(self)
            files = self._recordings.files
            files.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._tracks.append(
                _TrackWriter(files.path(self.recording_id, RAW), aead, self.recording_id, RAW)
            )
            if self.sample_rate != WAV_RATE:
                self._tracks.append(
                    _TrackWriter(files.path(self.recording_id, WIDE), aead, self.recording_id, WIDE)
                )
                self._resampler = soxr.ResampleStream(
                    self.sample_rate, WAV_RATE, 1, dtype="int16", quality="HQ"
                )
        except Exception as error:
            self._fail(error)

    def append(self, pcm: bytes) -> None:
        if self._problem is not None:
            return
        try:
            self._tracks[0].write(pcm)
            if self._resampler is not None:
                samples = np.frombuffer(pcm, dtype="<i2")
                self._tracks[1].write(self._resampler.resample_chunk(samples).tobytes())
        except OSError as error:
            self._fail(error)

    def finish(self, speaker_id: str | None, dropped: int) -> None:
        if self._problem is None:
            try:
                if self._resampler is not None:
                    tail = self._resampler.resample_chunk(np.zeros(0, np.int16), last=True)
                    self._tracks[1].write(tail.tobytes())
                for track in self._tracks:
                    track.finish()
            except OSError as error:
                self._fail(error)
        ending = Ending(
            speaker_id,
            raw_bytes=self._tracks[0].bytes if self._tracks else 0,
            wav_bytes=self._tracks[-1].bytes if self._tracks else 0,
            dropped_bytes=dropped,
            problem=self._problem,
        )
        self._recordings.close_row(self, ending)

    def _fail(self, error: Exception) -> None:
        self._problem = f"{type(error).__name__}: {error}"[:512]
        for track in self._tracks:
            track.abandon()
        logger.error(
            "a call recording could not be written; the call goes on unrecorded",
            extra={
                "call_id": self.call_id,
                "participant": self.raw_id,
                "recording_id": self.recording_id,
                "error": self._problem,
            },
        )


class Recorder:
    """The event loop's side of one participant's recording: it gathers a second of audio
    at a time and hands it to the writer; never blocks."""

    def __init__(self, writer: RecordingWriter, segment: _Segment) -> None:
        self._writer = writer
        self._segment = segment
        self.sample_rate = segment.sample_rate
        self._chunk_bytes = int(2 * segment.sample_rate * CHUNK_SECONDS)
        self._buffer = bytearray()
        self.dropped = 0  # bytes the disk was too far behind to take

    def write(self, pcm: bytes) -> None:
        self._buffer += pcm
        if len(self._buffer) >= self._chunk_bytes:
            self._hand_over()

    def finish(self, speaker_id: str | None) -> None:
        """The recording is complete (the call ended, or recording was turned off)."""
        if self._buffer:
            self._hand_over()
        segment, dropped = self._segment, self.dropped
        self._writer.submit(lambda: segment.finish(speaker_id, dropped))

    def _hand_over(self) -> None:
        chunk = bytes(self._buffer)
        self._buffer.clear()
        segment = self._segment
        if self._writer.submit(lambda: segment.append(chunk), len(chunk)):
            return
        if not self.dropped:
            logger.warning(
                "call recording falls behind the disk: audio is dropped from it",
                extra={"call_id": segment.call_id, "participant": segment.raw_id},
            )
        self.dropped += len(chunk)


@dataclasses.dataclass(frozen=True)
class RecordingAudio:
    """A participant's finished recordings, ready to stream: ``chunks`` yields the samples
    (s16le mono at ``sample_rate``) of each recording in turn."""

    sample_rate: int
    size: int  # bytes of samples
    dropped_bytes: int
    recordings: int
    chunks: Iterator[bytes]


class Recordings:
    """Whether a call is recorded, its recorders, and the recordings kept: read for a
    download, deleted with a speaker or by the retention sweep."""

    def __init__(
        self,
        database: Database,
        cipher: Cipher,
        files: RecordingFiles,
        *,
        default: bool,
        max_pending_bytes: int,
    ) -> None:
        self._database = database
        self._cipher = cipher
        self.files = files
        self.default = default
        self._writer = RecordingWriter(max_pending_bytes)
        # Recordings started here and not yet closed, by (call id, raw id): until the writer
        # has made its row, only this says that a recording is on its way.
        self._open: collections.Counter[tuple[str, str]] = collections.Counter()
        self._open_lock = threading.Lock()

    # --- whether to record ---------------------------------------------------------------------

    def wanted(self, call_setting: bool | None) -> bool:
        """Whether a call is recorded: its own setting, else the service's."""
        return self.default if call_setting is None else call_setting

    async def setting(self, call_id: str) -> bool | None:
        """The call's own setting, if an admin chose one; None (the service's default)
        also when the database cannot say, logged."""

        def read() -> bool | None:
            with self._database.session() as session:
                row = session.get(CallRecordingSetting, call_id)
                return None if row is None else row.enabled

        try:
            return await asyncio.to_thread(read)
        except Exception as error:
            logger.warning(
                "could not read whether the call is recorded; the service's default applies",
                extra={"call_id": call_id, "error": str(error)},
            )
            return None

    def choose(self, call_id: str, enabled: bool, actor: str) -> None:
        """Record the call, or not, whatever the service's default (blocking)."""
        with self._database.session() as session:
            row = session.get(CallRecordingSetting, call_id)
            if row is None:
                session.add(CallRecordingSetting(call_id=call_id, enabled=enabled, set_by=actor))
            else:
                row.enabled, row.set_by = enabled, actor

    # --- recording -----------------------------------------------------------------------------

    def start(self, call_id: str, raw_id: str, sample_rate: int) -> Recorder:
        """A recorder for a participant's audio from now on (its files open in the writer)."""
        segment = _Segment(self, call_id, raw_id, sample_rate)
        with self._open_lock:
            self._open[call_id, raw_id] += 1
        self._writer.submit(segment.open)
        return Recorder(self._writer, segment)

    def close(self) -> None:
        """Finish what is queued (blocking): call after the calls have ended."""
        self._writer.close()

    def new_row(self, segment: _Segment) -> AESGCM:
        """The writer thread: the recording's index row and data key."""
        data_key = secrets.token_bytes(KEY_BYTES)
        key_id, sealed = self._cipher.seal(data_key, recording_key_aad(segment.recording_id))
        with self._database.session() as session:
            session.add(
                CallRecording(
                    recording_id=segment.recording_id,
                    call_id=segment.call_id,
                    participant_raw_id=segment.raw_id,
                    sample_rate=segment.sample_rate,
                    status=RECORDING,
                    sealed_key=sealed,
                    key_id=key_id,
                )
            )
        return AESGCM(data_key)

    def close_row(self, segment: _Segment, ending: Ending) -> None:
        """The writer thread: the recording is done; its files go if its row has gone (its
        speaker was deleted meanwhile) or never came (the database was away)."""
        try:
            status = self._close_row(segment.recording_id, ending)
        finally:
            with self._open_lock:
                self._open[segment.call_id, segment.raw_id] -= 1
                self._open += collections.Counter()  # drop the zero counts
        if status is None:
            self.files.remove([segment.recording_id])
            return
        logger.info(
            "call recording finished",
            extra={
                "call_id": segment.call_id,
                "participant": segment.raw_id,
                "recording_id": segment.recording_id,
                "status": status,
                "bytes": ending.raw_bytes,
                "dropped_bytes": ending.dropped_bytes,
            },
        )

    def _close_row(self, recording_id: str, ending: Ending) -> str | None:
        """The row's final state; its status, or None when there is no row."""
        with self._database.session() as session:
            row = session.scalar(
                select(CallRecording).where(CallRecording.recording_id == recording_id)
            )
            if row is None:
                return None
            row.status = COMPLETE if ending.problem is None else FAILED
            row.speaker_id = ending.speaker_id
            row.raw_bytes, row.wav_bytes = ending.raw_bytes, ending.wav_bytes
            row.dropped_bytes, row.problem = ending.dropped_bytes, ending.problem
            row.ended_at = utcnow()
            return row.status

    # --- reading -------------------------------------------------------------------------------

    def kept(self, call_id: str) -> dict[str, str]:
        """By participant raw id, what :meth:`audio` would find of the call's recordings:
        ``complete`` (one can be downloaded), ``recording`` (one is still being written) or
        ``failed``; a participant with none is absent (blocking). A page says this before
        anyone downloads, so that it can offer a player only where there is audio."""
        with self._database.session() as session:
            found = session.execute(
                select(CallRecording.participant_raw_id, CallRecording.status).where(
                    CallRecording.call_id == call_id
                )
            ).all()
        with self._open_lock:
            writing = [raw_id for call, raw_id in self._open if call == call_id]
        states = dict.fromkeys(writing, RECORDING)
        rank = {FAILED: 0, RECORDING: 1, COMPLETE: 2}  # the best of a resumed call's stretches
        for raw_id, status in found:
            if rank.get(status, -1) > rank.get(states.get(raw_id, ""), -1):
                states[raw_id] = status
        return states

    def audio(self, call_id: str, raw_id: str, *, raw: bool) -> RecordingAudio:
        """The participant's finished recordings in order: the raw PCM (``raw``), else the
        16 kHz samples. :class:`RecordingNotFound` if none, :class:`RecordingInProgress`
        if the only ones are still being written (blocking)."""
        with self._database.session() as session:
            rows = session.scalars(
                select(CallRecording)
                .where(CallRecording.call_id == call_id, CallRecording.participant_raw_id == raw_id)
                .order_by(CallRecording.started_at, CallRecording.id)
            ).all()
            session.expunge_all()
        done = [row for row in rows if row.status == COMPLETE]
        if not done:
            who = f"participant {raw_id!r} of call {call_id!r}"
            with self._open_lock:
                writing = self._open[call_id, raw_id] > 0
            if writing or any(row.status == RECORDING for row in rows):
                raise RecordingInProgress(
                    f"the recording of {who} is still being written: it can be downloaded "
                    "once the call has ended"
                )
            failed = [row.problem for row in rows if row.status == FAILED]
            if failed:
                raise RecordingNotFound(
                    f"the recording of {who} failed ({failed[-1]}); see the service log"
                )
            raise RecordingNotFound(f"no recording of {who} is kept")
        rates = {row.sample_rate if raw else WAV_RATE for row in done}
        if len(rates) > 1:
            raise RecordingUnreadable(
                f"the recordings of participant {raw_id!r} have different sample rates "
                f"({', '.join(map(str, sorted(rates)))} Hz); download the WAV instead"
            )
        keys = [self._data_key(row) for row in done]  # every key opens before any audio
        for row in done:
            if not self.files.path(row.recording_id, _track_of(row, raw)).is_file():
                raise RecordingUnreadable(
                    f"the file of recording {row.recording_id} is missing from "
                    f"{self.files.folder} (BIOMETRICS_RECORDINGS_DIR)"
                )
        return RecordingAudio(
            sample_rate=rates.pop(),
            size=sum(row.raw_bytes if raw else row.wav_bytes for row in done),
            dropped_bytes=sum(row.dropped_bytes for row in done),
            recordings=len(done),
            chunks=self._chunks(done, keys, raw),
        )

    def _data_key(self, row: CallRecording) -> AESGCM:
        what = f"the key of recording {row.recording_id}"
        try:
            key = self._cipher.open(
                row.key_id, row.sealed_key, recording_key_aad(row.recording_id), what
            )
        except Exception as error:
            raise RecordingUnreadable(str(error)) from None
        return AESGCM(key)

    def _chunks(
        self, rows: Sequence[CallRecording], keys: Sequence[AESGCM], raw: bool
    ) -> Iterator[bytes]:
        for row, aead in zip(rows, keys, strict=True):
            track = _track_of(row, raw)
            path = self.files.path(row.recording_id, track)
            yield from read_track(path, aead, row.recording_id, track)

    # --- deleting ------------------------------------------------------------------------------

    def forget_speaker(self, session: Session, speaker_id: str) -> list[str]:
        """Delete the rows of the recordings of participants who claimed or enrolled as
        the speaker, or were judged as them, in ``session``; their ids, to
        :meth:`RecordingFiles.remove` once it is committed. Run before the speaker's
        verdicts are deleted: they say which participants claimed them."""
        judged = (
            select(VerdictRecord.call_id, VerdictRecord.participant_raw_id)
            .where(VerdictRecord.speaker_id == speaker_id, VerdictRecord.call_id.is_not(None))
            .distinct()
        )
        ids = list(
            session.scalars(
                select(CallRecording.recording_id).where(
                    (CallRecording.speaker_id == speaker_id)
                    | tuple_(CallRecording.call_id, CallRecording.participant_raw_id).in_(judged)
                )
            )
        )
        if ids:
            session.execute(delete(CallRecording).where(CallRecording.recording_id.in_(ids)))
        return ids


def _track_of(row: CallRecording, raw: bool) -> str:
    """The file holding what was asked: a 16 kHz call's raw track is its 16 kHz one."""
    return RAW if raw or row.sample_rate == WAV_RATE else WIDE
