"""Runs the encoder in its own thread so that inference never blocks the event loop. It takes
waveforms of speech (whoever calls it found the speech) and knows nothing of detectors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from biometrics.audio.decode import SAMPLE_RATE
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

    async def embed(self, waveforms: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.encoder.embed, list(waveforms))

    async def embed_speech(self, speech: npt.NDArray[np.float32]) -> SpeechEmbedding:
        """Embed speech (16 kHz, speech frames only) as one speech-weighted mean."""
        loop = asyncio.get_running_loop()
        vector, pieces = await loop.run_in_executor(
            self._executor, pool_speech, self.encoder.embed, speech
        )
        return SpeechEmbedding(vector, len(speech) / SAMPLE_RATE, pieces)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
