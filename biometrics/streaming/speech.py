"""Speech detection frame by frame, as the audio arrives.

The REST path judges a whole recording at once (:meth:`SpeechDetector.detect`) and then
bridges short pauses inside speech, so that a word is not cut into pieces. A live call
cannot look ahead, so the same rule (:class:`SpeechBridge`) is applied with a small delay: up to
``bridge_frames`` silent frames are held back, and released as speech if speech follows
them, or dropped if it does not. The same audio therefore yields the same speech frames
live as it would uploaded, and the same embedding.
"""

from __future__ import annotations

import numpy as np

from biometrics.audio import SpeechDetector
from biometrics.audio.speech import BRIDGE_FRAMES, SpeechBridge


class SpeechFilter:
    """Feed every 20 ms frame in order; get back the frames that are speech."""

    def __init__(self, detector: SpeechDetector, bridge_frames: int = BRIDGE_FRAMES) -> None:
        self._detector = detector
        self._bridge = SpeechBridge(bridge_frames)
        self._held: list[np.ndarray] = []  # the bridge's pending frames

    def push(self, frame: np.ndarray, *, silent: bool = False) -> list[np.ndarray]:
        """The speech frames this frame completes: none, itself, or held ones and itself.

        ``silent`` (ACS's flag for a buffer of silence) skips the detector.
        """
        released = self._bridge.push(not silent and self._detector.is_speech(frame))
        if released:
            speech = [*self._held, frame]
            self._held = []
            return speech
        if self._bridge.pending:
            self._held.append(frame.copy())
        else:
            self._held = []
        return []
