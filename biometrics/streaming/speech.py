"""Speech detection frame by frame, as the audio arrives.

The REST path judges a whole recording at once (:meth:`SpeechDetector.detect`) and then
bridges short pauses inside speech, so that a word is not cut into pieces. A live call
cannot look ahead, so the same rule is applied with a small delay instead: up to
``bridge_frames`` silent frames are held back, and released as speech if speech follows
them, or dropped if it does not. The same audio therefore yields the same speech frames
live as it would uploaded, and the same embedding.
"""

from __future__ import annotations

import numpy as np

from biometrics.audio import SpeechDetector

# SpeechDetector's default: gaps of up to 60 ms inside speech count as speech.
BRIDGE_FRAMES = 3


class SpeechFilter:
    """Feed every 20 ms frame in order; get back the frames that are speech."""

    def __init__(self, detector: SpeechDetector, bridge_frames: int = BRIDGE_FRAMES) -> None:
        self._detector = detector
        self._bridge_frames = bridge_frames
        self._held: list[np.ndarray] = []  # silent frames right after speech, at most bridge
        self._after_speech = False

    def push(self, frame: np.ndarray, *, silent: bool = False) -> list[np.ndarray]:
        """The speech frames this frame completes: none, itself, or held ones and itself.

        ``silent`` (ACS's flag for a buffer of silence) skips the detector.
        """
        if not silent and self._detector.is_speech(frame):
            released = [*self._held, frame] if self._after_speech else [frame]
            self._held = []
            self._after_speech = True
            return released
        if self._after_speech and len(self._held) < self._bridge_frames:
            self._held.append(frame.copy())
        else:  # the pause is longer than a bridge: what was held was silence after all
            self._held = []
            self._after_speech = False
        return []
