"""The embedding façade the services call: speech in, one pooled embedding out, through
the one inference path (:mod:`biometrics.embedding.batcher`). It takes waveforms of
speech (whoever calls it found the speech) and knows nothing of detectors."""

from __future__ import annotations

import asyncio
import logging

from biometrics.audio.decode import SAMPLE_RATE, Samples
from biometrics.embedding.batcher import InferenceBatcher, Urgency
from biometrics.embedding.identity import ModelIdentity
from biometrics.embedding.pooling import SpeechEmbedding, pool_pieces, speech_pieces
from biometrics.metrics import Metrics

logger = logging.getLogger(__name__)


class EmbeddingWorker:
    def __init__(self, batcher: InferenceBatcher, metrics: Metrics | None = None) -> None:
        self.batcher = batcher
        self._metrics = metrics

    @property
    def identity(self) -> ModelIdentity:
        return self.batcher.encoder.identity

    async def embed_speech(
        self, speech: Samples, *, urgency: Urgency = Urgency.REST
    ) -> SpeechEmbedding:
        """Embed speech (16 kHz, speech frames only) as one speech-weighted mean; raises
        :class:`~biometrics.errors.InferenceOverloaded` for REST or bulk work when the
        queue is full. A live request that took longer than its budget says so in
        ``delay``."""
        pieces = speech_pieces(speech)
        inference = await asyncio.wrap_future(self.batcher.submit(pieces, urgency))
        if self._metrics is not None:
            self._metrics.inference(urgency.name.lower(), inference.elapsed_seconds)
        delay = inference.delay
        if delay is not None:
            logger.warning(
                "embedding served late",
                extra={
                    "urgency": urgency.name,
                    "elapsed_ms": round(inference.elapsed_seconds * 1000),
                    "budget_ms": round(urgency.budget_seconds * 1000),
                },
            )
        return SpeechEmbedding(
            pool_pieces(pieces, inference.vectors), len(speech) / SAMPLE_RATE, len(pieces), delay
        )

    def close(self) -> None:
        self.batcher.close()
