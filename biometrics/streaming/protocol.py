"""The ACS audio-streaming wire format, both ways: parse and validate what a call sends, and
write the same messages, knowing no socket.

Azure Communication Services connects to us as the WebSocket client and sends JSON text
frames (see shared/acs-protocol.md, section 1): one ``AudioMetadata`` first, then an
``AudioData`` frame every 20 ms per speaking participant, plus ``DtmfData`` when DTMF
streaming is on. ``StreamParser`` turns each frame into a typed value, or drops it, or
raises ``ProtocolViolation`` when the socket must close. ``encode_metadata``,
``encode_audio`` and ``encode_dtmf`` are its exact inverse (the call simulator and the
tests build messages with them). The endpoint owns the socket; this module owns every JSON
field name.

The rule for bad input: a call whose *format* we cannot trust is closed, a single bad
*frame* is dropped. Everything a peer can send ends in one of these rows, never in an
unhandled exception:

=====================================================  ==================  ======================
Input                                                  Action              Counted as
=====================================================  ==================  ======================
before metadata: not JSON, no kind, or a binary frame  close 1007
AudioMetadata: ``audioMetadata`` not an object, or a   close 1007
  field missing or of the wrong JSON type
encoding not PCM (any case), sampleRate not 16000 or   close 1008
  24000, channels not 1, length not even in 2..65536
AudioData before AudioMetadata                         close 1008
a second AudioMetadata that differs from the first     close 1008
a second AudioMetadata identical to the first          ignored, counted
after metadata: text that is not JSON                  drop                invalid_json
  not an object, or ``kind`` missing / not a string    drop                invalid_message
  ``audioData`` missing, or ``data`` missing           drop                missing_field
    (not silent)
  ``silent: true`` with empty or no ``data``           20 ms of zero PCM
  ``timestamp`` missing                                stamped on arrival
  timestamp not ISO-8601                               drop                invalid_timestamp
  participantRawID not a string or null, or too long   drop                invalid_participant
  unmixed stream (first frame named a participant),    drop                missing_participant
    a frame without ``participantRawID`` (absent,
    null, "", or another casing: ``participantRawId``)
  mixed stream (first frame named nobody), a frame     drop                unexpected_participant
    naming a participant
  ``silent`` not a boolean                             drop                invalid_silent
  data not a string of strict base64                   drop                invalid_base64
  data decodes to no bytes (not silent)                drop                empty_data
  data decodes to an odd number of bytes               drop                odd_length
  data longer than max(length, 20 ms at the rate)      drop                over_length
  a binary WebSocket frame                             drop                binary_frame
malformed DtmfData (before or after metadata)          drop                invalid_dtmf
DtmfData, unknown kinds (before or after metadata)     passed on, counted
50 drops in a row (1 s of audio)                       close 1007
=====================================================  ==================  ======================

1008 (policy violation) means "well-formed, but not something we accept"; 1007 (invalid
data) means "we cannot read it". Any accepted message resets the run of bad frames, so a
peer that sends garbage now and then keeps its call, and one that sends only garbage is
closed within a second of audio. Frames shorter than ``length`` are accepted (a final
partial frame is normal), and so are frames of 20 ms at the announced rate when ``length``
says less: a 24 kHz stream whose metadata keeps the 16 kHz default ``length: 640`` still
sends 960-byte frames, and Microsoft's own JS parser takes them. A naive timestamp is taken
as UTC; others are converted to UTC.

Mixed or unmixed is fixed by the first accepted ``AudioData`` of the socket: a non-empty
string under the exact key ``participantRawID`` makes it unmixed (one stream per
participant), anything else mixed (``AudioFrame.participant_raw_id`` None). A frame of the
other kind is then dropped rather than merged into a stream it does not belong to: the
voice of someone unnamed must never be judged as a named participant's, or the reverse.

Not handled here: how large a WebSocket message may be (the endpoint's ``max_size``) and
how long to wait for the metadata (the endpoint's timeout); DtmfData and unknown kinds
are accepted before the metadata, so only a timeout bounds a peer that never sends one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
from collections.abc import Callable
from datetime import UTC, datetime

CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
MAX_REASON_BYTES = 123  # a WebSocket close frame's payload is 125 bytes, 2 of them the code

SUPPORTED_SAMPLE_RATES = frozenset({16_000, 24_000})
SUPPORTED_CHANNELS = 1
MAX_FRAME_BYTES = 65_536  # a preview doc announced "64 Kbytes" packets; GA sends 640 or 960
MAX_CONSECUTIVE_BAD_FRAMES = 50  # one second of 20 ms frames
MAX_ID_CHARS = 256  # raw IDs are under 100 characters; this bounds what a peer can make us keep
MAX_KIND_CHARS = 64
FRAMES_PER_SECOND = 50  # ACS sends one frame every 20 ms


class DropReason(enum.StrEnum):
    """Why a frame was dropped; ``counters["dropped_<reason>"]`` counts each."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    MISSING_FIELD = "missing_field"
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_PARTICIPANT = "invalid_participant"
    INVALID_SILENT = "invalid_silent"
    INVALID_BASE64 = "invalid_base64"
    EMPTY_DATA = "empty_data"
    ODD_LENGTH = "odd_length"
    OVER_LENGTH = "over_length"
    BINARY_FRAME = "binary_frame"
    INVALID_DTMF = "invalid_dtmf"
    MISSING_PARTICIPANT = "missing_participant"
    UNEXPECTED_PARTICIPANT = "unexpected_participant"


class _Dropped(Exception):
    """Raised inside the parser for a frame to drop; ``feed_text`` counts it."""

    def __init__(self, reason: DropReason) -> None:
        self.reason = reason


class ProtocolViolation(Exception):
    """The socket must close with ``close_code`` and ``reason`` (cut to fit a close frame)."""

    def __init__(self, close_code: int, reason: str) -> None:
        self.close_code = close_code
        self.reason = _fit_reason(reason)
        super().__init__(f"{close_code}: {self.reason}")


@dataclasses.dataclass(frozen=True, slots=True)
class AudioFormat:
    """What ``AudioMetadata`` announced: 16-bit little-endian PCM at ``sample_rate``."""

    subscription_id: str
    sample_rate: int
    channels: int
    frame_bytes: int  # the announced ``length``

    @property
    def frame_seconds(self) -> float:
        return self.frame_bytes / (2 * self.channels * self.sample_rate)

    @property
    def interval_bytes(self) -> int:
        """Bytes in 20 ms at the announced rate: 640 at 16 kHz, 960 at 24 kHz."""
        return 2 * self.channels * self.sample_rate // FRAMES_PER_SECOND

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame accepted: the announced length, or 20 ms if that is more."""
        return max(self.frame_bytes, self.interval_bytes)


@dataclasses.dataclass(frozen=True, slots=True)
class AudioFrame:
    """One ``AudioData`` frame: ``pcm`` is s16le mono at the format's rate, even-length."""

    timestamp: datetime  # timezone-aware, UTC; the arrival time when ACS sent none
    participant_raw_id: str | None  # None in mixed mode ("mixed" is an ordinary raw id)
    pcm: bytes
    silent: bool


@dataclasses.dataclass(frozen=True, slots=True)
class DtmfFrame:
    """A key pressed on the phone; ACS documents only ``data``, .NET also reads the rest."""

    tone: str
    timestamp: datetime | None
    participant_raw_id: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class IgnoredFrame:
    """A message of a kind we do not use (e.g. TranscriptionData), cut to 64 characters."""

    kind: str


Message = AudioFormat | AudioFrame | DtmfFrame | IgnoredFrame


class StreamParser:
    """The state of one socket: feed it every frame in order.

    ``feed_text`` returns the parsed message, or None for a frame that was dropped (or a
    repeated metadata); it raises :class:`ProtocolViolation` when the socket must close.
    ``counters`` holds frames, metadata_frames, audio_frames, dtmf_frames, ignored_kinds,
    dropped (all reasons) and ``dropped_<reason>`` for each ``DropReason``. ``clock``
    stamps frames that come without a timestamp (tests pass a fixed one).
    """

    def __init__(
        self,
        *,
        max_consecutive_bad: int = MAX_CONSECUTIVE_BAD_FRAMES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._max_bad = max_consecutive_bad
        self._clock = clock
        self._bad_in_a_row = 0
        self._format: AudioFormat | None = None
        self._mixed: bool | None = None
        self._max_base64_chars = 0
        self.counters: dict[str, int] = dict.fromkeys(
            ["frames", "metadata_frames", "audio_frames", "dtmf_frames", "ignored_kinds", "dropped"]
            + [f"dropped_{reason}" for reason in DropReason],
            0,
        )

    @property
    def format(self) -> AudioFormat | None:
        """The announced format; None until a valid ``AudioMetadata`` arrived."""
        return self._format

    @property
    def mixed(self) -> bool | None:
        """True for a mixed stream, False for unmixed; None until the first audio frame."""
        return self._mixed

    def feed_text(self, text: str) -> Message | None:
        self.counters["frames"] += 1
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            if self._format is None:
                raise ProtocolViolation(
                    CLOSE_INVALID_DATA, "expected AudioMetadata first: the frame is not JSON"
                ) from None
            self._drop(DropReason.INVALID_JSON)
            return None
        kind = message.get("kind") if type(message) is dict else None
        if type(kind) is not str:
            if self._format is None:
                raise ProtocolViolation(
                    CLOSE_INVALID_DATA, "expected AudioMetadata first: the frame has no kind"
                )
            self._drop(DropReason.INVALID_MESSAGE)
            return None

        result: Message | None
        try:
            if kind == "AudioData":
                if self._format is None:
                    raise ProtocolViolation(
                        CLOSE_POLICY_VIOLATION, "AudioData before AudioMetadata"
                    )
                result = self._audio(message.get("audioData"), self._format)
            elif kind == "AudioMetadata":
                result = self._metadata(message.get("audioMetadata"))
            elif kind == "DtmfData":
                result = self._dtmf(message.get("dtmfData"))
            else:
                self.counters["ignored_kinds"] += 1
                result = IgnoredFrame(kind[:MAX_KIND_CHARS])
        except _Dropped as dropped:
            self._drop(dropped.reason)
            return None
        if result is not None:
            self._bad_in_a_row = 0
        return result

    def feed_binary(self, data: bytes) -> None:
        """ACS sends only text frames: a binary one is dropped, or closes before metadata."""
        self.counters["frames"] += 1
        if self._format is None:
            raise ProtocolViolation(
                CLOSE_INVALID_DATA, "expected AudioMetadata first: got a binary frame"
            )
        self._drop(DropReason.BINARY_FRAME)

    # --- one kind each ---------------------------------------------------------------------

    def _metadata(self, payload: object) -> AudioFormat | None:
        announced = _parse_metadata(payload)
        self.counters["metadata_frames"] += 1
        if self._format is None:
            self._format = announced
            self._max_base64_chars = 4 * -(-announced.max_frame_bytes // 3)
            return announced
        if announced != self._format:
            raise ProtocolViolation(
                CLOSE_POLICY_VIOLATION, "a second AudioMetadata changes the stream's format"
            )
        return None

    def _audio(self, payload: object, audio_format: AudioFormat) -> AudioFrame:
        if type(payload) is not dict:
            raise _Dropped(DropReason.MISSING_FIELD)
        silent = payload.get("silent", False)
        if type(silent) is not bool:
            raise _Dropped(DropReason.INVALID_SILENT)
        data = payload.get("data")
        if silent and data in (None, ""):  # silence may come without its (zero) samples
            pcm = bytes(audio_format.interval_bytes)
        else:
            if type(data) is not str:
                raise _Dropped(
                    DropReason.MISSING_FIELD if data is None else DropReason.INVALID_BASE64
                )
            if len(data) > self._max_base64_chars:  # surely too long: do not even decode it
                raise _Dropped(DropReason.OVER_LENGTH)
            try:
                pcm = binascii.a2b_base64(data, strict_mode=True)
            except ValueError:  # binascii.Error, or a non-ASCII string
                raise _Dropped(DropReason.INVALID_BASE64) from None
            if not pcm:
                raise _Dropped(DropReason.EMPTY_DATA)
            if len(pcm) & 1:
                raise _Dropped(DropReason.ODD_LENGTH)
            if len(pcm) > audio_format.max_frame_bytes:
                raise _Dropped(DropReason.OVER_LENGTH)

        stamp = payload.get("timestamp")
        timestamp = self._clock() if stamp is None else _parse_timestamp(stamp)
        if timestamp is None:
            raise _Dropped(DropReason.INVALID_TIMESTAMP)
        participant = payload.get("participantRawID")
        if participant is not None and (
            type(participant) is not str or len(participant) > MAX_ID_CHARS
        ):
            raise _Dropped(DropReason.INVALID_PARTICIPANT)
        participant = participant or None  # "" is no participant too
        mixed = participant is None
        if self._mixed is None:
            self._mixed = mixed
        elif mixed != self._mixed:
            raise _Dropped(
                DropReason.UNEXPECTED_PARTICIPANT if self._mixed else DropReason.MISSING_PARTICIPANT
            )

        self.counters["audio_frames"] += 1
        return AudioFrame(timestamp, participant, pcm, silent)

    def _dtmf(self, payload: object) -> DtmfFrame:
        if type(payload) is not dict:
            raise _Dropped(DropReason.INVALID_DTMF)
        tone = payload.get("data")
        stamp = payload.get("timestamp")
        participant = payload.get("participantRawID")
        timestamp = None if stamp is None else _parse_timestamp(stamp)
        if (
            type(tone) is not str
            or not 0 < len(tone) <= MAX_KIND_CHARS
            or (stamp is not None and timestamp is None)
            or (participant is not None and type(participant) is not str)
            or (type(participant) is str and len(participant) > MAX_ID_CHARS)
        ):
            raise _Dropped(DropReason.INVALID_DTMF)
        self.counters["dtmf_frames"] += 1
        return DtmfFrame(tone, timestamp, participant or None)

    def _drop(self, reason: DropReason) -> None:
        counters = self.counters
        counters["dropped"] += 1
        counters[f"dropped_{reason}"] += 1
        self._bad_in_a_row += 1
        if self._bad_in_a_row >= self._max_bad:
            raise ProtocolViolation(
                CLOSE_INVALID_DATA, f"{self._bad_in_a_row} bad frames in a row (last: {reason})"
            )


# --- Writing: the exact inverse of StreamParser -----------------------------------------------


def encode_metadata(audio_format: AudioFormat, encoding: str = "PCM") -> str:
    """The ``AudioMetadata`` message that announces ``audio_format``."""
    return _dumps(
        {
            "kind": "AudioMetadata",
            "audioMetadata": {
                "subscriptionId": audio_format.subscription_id,
                "encoding": encoding,
                "sampleRate": audio_format.sample_rate,
                "channels": audio_format.channels,
                "length": audio_format.frame_bytes,
            },
        }
    )


def encode_audio(frame: AudioFrame) -> str:
    """An ``AudioData`` message; mixed audio (no participant) carries no participantRawID."""
    data: dict[str, object] = {"timestamp": format_timestamp(frame.timestamp)}
    if frame.participant_raw_id is not None:
        data["participantRawID"] = frame.participant_raw_id
    data["data"] = base64.b64encode(frame.pcm).decode("ascii")
    data["silent"] = frame.silent
    return _dumps({"kind": "AudioData", "audioData": data})


def encode_dtmf(frame: DtmfFrame) -> str:
    """A ``DtmfData`` message, with the optional fields only when set."""
    data: dict[str, object] = {"data": frame.tone}
    if frame.timestamp is not None:
        data["timestamp"] = format_timestamp(frame.timestamp)
    if frame.participant_raw_id is not None:
        data["participantRawID"] = frame.participant_raw_id
    return _dumps({"kind": "DtmfData", "dtmfData": data})


def format_timestamp(moment: datetime) -> str:
    """As ACS writes it, ``2024-11-15T19:16:12.925Z`` (naive means UTC); microseconds only
    when the moment has them, so that parsing gives the same moment back."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    timespec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def _dumps(message: dict[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


# --- Reading helpers ------------------------------------------------------------------------


def _parse_metadata(payload: object) -> AudioFormat:
    if type(payload) is not dict:
        raise ProtocolViolation(CLOSE_INVALID_DATA, "AudioMetadata has no audioMetadata object")
    subscription_id = payload.get("subscriptionId")
    encoding = payload.get("encoding")
    if type(subscription_id) is not str or len(subscription_id) > MAX_ID_CHARS:
        raise ProtocolViolation(CLOSE_INVALID_DATA, "audioMetadata.subscriptionId must be a string")
    if type(encoding) is not str:
        raise ProtocolViolation(CLOSE_INVALID_DATA, "audioMetadata.encoding must be a string")
    numbers = {}
    for name in ("sampleRate", "channels", "length"):
        value = payload.get(name)
        if type(value) is not int:  # not bool, not float
            raise ProtocolViolation(CLOSE_INVALID_DATA, f"audioMetadata.{name} must be an integer")
        numbers[name] = value

    if encoding.lower() != "pcm":
        raise ProtocolViolation(
            CLOSE_POLICY_VIOLATION, f"unsupported encoding {_show(encoding)}: only PCM"
        )
    if numbers["sampleRate"] not in SUPPORTED_SAMPLE_RATES:
        raise ProtocolViolation(
            CLOSE_POLICY_VIOLATION,
            f"unsupported sampleRate {_show(numbers['sampleRate'])}: use 16000 or 24000",
        )
    if numbers["channels"] != SUPPORTED_CHANNELS:
        raise ProtocolViolation(
            CLOSE_POLICY_VIOLATION,
            f"unsupported channels {_show(numbers['channels'])}: only mono (1)",
        )
    length = numbers["length"]
    if not 0 < length <= MAX_FRAME_BYTES or length % 2:
        raise ProtocolViolation(
            CLOSE_POLICY_VIOLATION,
            f"unsupported length {_show(length)}: an even byte count up to {MAX_FRAME_BYTES}",
        )
    return AudioFormat(subscription_id, numbers["sampleRate"], numbers["channels"], length)


def _parse_timestamp(value: object) -> datetime | None:
    """ISO-8601 as ACS sends it (``2024-11-15T19:16:12.925Z``) to an aware UTC datetime."""
    if type(value) is not str or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is UTC:
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00
        return None


def _show(value: object) -> str:
    """A peer-supplied value, short enough to quote in a close reason."""
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _fit_reason(reason: str) -> str:
    encoded = reason.encode("utf-8")
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    return encoded[: MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."
