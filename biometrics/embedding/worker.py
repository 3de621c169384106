"""Runs the encoder in its own thread so that inference never blocks the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from biometrics.audio import SpeechSegments
from biometrics.embedding.encoder import SpeakerEncoder
from biometrics.embedding.identity import ModelIdentity
from biometrics.embedding.pooling import SpeechEmbedding, pool_speech


class EmbeddingWorker:
    def __init__(self, encoder: SpeakerEncoder) -> None:
        self.encoder = encoder
        # One thread: torch already spreads one batch over its intra-op threads.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding")

    @property
    def identity(self) -> ModelIdentity:
        return self.encoder.identity

    async def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.encoder.embed, list(waveforms))

    async def embed_speech(self, segments: SpeechSegments) -> SpeechEmbedding:
        """Embed the speech in ``segments`` as one speech-weighted mean."""
        loop = asyncio.get_running_loop()
        vector, pieces = await loop.run_in_executor(
            self._executor, pool_speech, self.encoder.embed, segments.speech()
        )
        return SpeechEmbedding(vector, segments.speech_seconds, pieces)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
