"""How a live participant's growing speech becomes one embedding: the one swappable choice.

Re-embed all the speech so far (it never exceeds the maximum decision speech, 10 s by
default) exactly as the REST path embeds an upload. Averaging the embeddings of each new
chunk costs half as much, but scripts/compare_streaming.py measured it worse at the first
decision (docs/accuracy.md). A replacement takes the same arguments and returns the same
value, and :class:`~biometrics.streaming.judge.Judge` takes it as a parameter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np

from biometrics.audio import SpeechSegments
from biometrics.audio.speech import FRAME_SAMPLES
from biometrics.embedding import EmbeddingWorker
from biometrics.embedding.pooling import SpeechEmbedding

EmbedStrategy = Callable[[EmbeddingWorker, np.ndarray], Awaitable[SpeechEmbedding]]


async def reembed_speech_so_far(worker: EmbeddingWorker, speech: np.ndarray) -> SpeechEmbedding:
    """``speech`` holds speech frames only (silence already dropped), 16 kHz float32."""
    frames = len(speech) // FRAME_SAMPLES
    segments = SpeechSegments(speech[: frames * FRAME_SAMPLES], np.ones(frames, dtype=bool))
    return await worker.embed_speech(segments)
