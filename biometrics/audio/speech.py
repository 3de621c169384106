"""Speech detection: which 20 ms frames hold speech, for a whole recording or a live stream.

WebRTC's voice activity detector decides per frame; an energy floor keeps faint line
noise out, and pauses of up to ``BRIDGE_FRAMES`` inside speech count as speech, so that a
word is not cut into pieces. Only speech counts toward any minimum and only speech is
embedded.

The detector adapts to what it has heard, so every upload and every live participant gets
one of its own (:func:`detect_speech` makes one per call); sharing one would make the same
audio give different speech, and different scores, depending on what came before.

A recording is judged whole (:meth:`SpeechDetector.detect`); a live stream cannot look
ahead, so :class:`SpeechFilter` applies the same bridging rule (:class:`SpeechBridge`) with
a delay of at most ``BRIDGE_FRAMES`` frames. The same audio therefore yields the same
speech frames, and the same quality measurement, uploaded or streamed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import webrtcvad

from biometrics.audio.decode import SAMPLE_RATE
from biometrics.audio.framing import FRAME_SAMPLES, FRAME_SECONDS
from biometrics.audio.quality import Quality, QualityMeter

BRIDGE_FRAMES = 3  # pauses of up to 60 ms inside speech count as speech

Frame = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class DetectedSpeech:
    """What verification and enrollment take: the speech frames only, and how the audio
    they came from measured."""

    samples: Frame  # speech frames, concatenated, 16 kHz float32
    quality: Quality
    audio_seconds: float  # the audio the speech was found in

    @property
    def speech_seconds(self) -> float:
        return self.quality.speech_seconds


@dataclasses.dataclass(frozen=True)
class SpeechSegments:
    samples: Frame  # the input, 16 kHz mono float32
    speech_mask: npt.NDArray[np.bool_]  # one bool per 20 ms frame

    @property
    def speech_seconds(self) -> float:
        return float(self.speech_mask.sum()) * FRAME_SECONDS

    @property
    def total_seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def frames(self) -> npt.NDArray[np.float32]:
        count = len(self.speech_mask)
        return self.samples[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)

    def speech(self) -> Frame:
        """The speech frames, concatenated."""
        return np.ascontiguousarray(self.frames()[self.speech_mask].reshape(-1))

    def detected(self) -> DetectedSpeech:
        meter = QualityMeter()
        meter.add_frames(self.frames(), self.speech_mask)
        return DetectedSpeech(self.speech(), meter.measure(), self.total_seconds)


class SpeechBridge:
    """The bridging rule, frame by frame, so that a whole recording and a live stream
    apply it identically: a pause of at most ``bridge_frames`` between speech frames is
    speech; a longer one is not. A pause is only known to be short once speech resumes."""

    def __init__(self, bridge_frames: int = BRIDGE_FRAMES) -> None:
        self._limit = bridge_frames
        self._after_speech = False
        self.pending = 0  # silent frames since the last speech that may still be bridged

    def push(self, is_speech: bool) -> int:
        """How many frames end as speech with this one: 0, or the pending ones and this one."""
        if is_speech:
            released = self.pending + 1 if self._after_speech else 1
            self.pending = 0
            self._after_speech = True
            return released
        if self._after_speech and self.pending < self._limit:
            self.pending += 1
        else:
            self.pending = 0
            self._after_speech = False
        return 0


class SpeechDetector:
    """Frame-level speech detector; cheap enough to run on the event loop per frame."""

    def __init__(
        self,
        aggressiveness: int = 2,
        energy_floor_dbfs: float = -50.0,
        bridge_frames: int = BRIDGE_FRAMES,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._energy_floor = 10.0 ** (energy_floor_dbfs / 20.0)
        self.bridge_frames = bridge_frames

    def is_speech(self, frame: Frame) -> bool:
        """Classify one 20 ms frame of 16 kHz float32 samples."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"a frame is {FRAME_SAMPLES} samples, got {len(frame)}")
        if float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) < self._energy_floor:
            return False
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return bool(self._vad.is_speech(pcm, SAMPLE_RATE))

    def detect(self, samples: Frame) -> SpeechSegments:
        count = len(samples) // FRAME_SAMPLES
        framed = samples[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
        mask = np.fromiter((self.is_speech(frame) for frame in framed), dtype=bool, count=count)
        return SpeechSegments(samples=samples, speech_mask=self._bridge(mask))

    def _bridge(self, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        bridge = SpeechBridge(self.bridge_frames)
        bridged = np.zeros_like(mask)
        for index, is_speech in enumerate(mask):
            released = bridge.push(bool(is_speech))
            if released:
                bridged[index - released + 1 : index + 1] = True
        return bridged


def detect_speech(samples: Frame) -> DetectedSpeech:
    """The speech in one recording, found by a detector of its own."""
    return SpeechDetector().detect(samples).detected()


class SpeechFilter:
    """A live stream's detector: feed every 20 ms frame in order; get back the frames whose
    decision it settles, each with that decision (speech or not)."""

    def __init__(self, detector: SpeechDetector) -> None:
        self._detector = detector
        self._bridge = SpeechBridge(detector.bridge_frames)
        self._held: list[Frame] = []  # the bridge's pending frames, undecided yet

    def push(self, frame: Frame, *, silent: bool = False) -> list[tuple[Frame, bool]]:
        """``silent`` (ACS's flag for a buffer of silence) skips the detector."""
        released = self._bridge.push(not silent and self._detector.is_speech(frame))
        if released:
            decided = [(held, True) for held in self._held] + [(frame, True)]
            self._held = []
            return decided
        if self._bridge.pending:
            self._held.append(frame.copy())
            return []
        decided = [(held, False) for held in self._held] + [(frame, False)]
        self._held = []
        return decided
