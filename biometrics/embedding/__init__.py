"""Speaker embeddings: the model folder, its loading through SpeechBrain, its identity,
the one batched inference path, and the worker façade over it."""

from biometrics.embedding.batcher import BatchingPolicy, InferenceBatcher, Urgency
from biometrics.embedding.encoder import SpeakerEncoder, load_encoder
from biometrics.embedding.identity import ModelIdentity
from biometrics.embedding.worker import EmbeddingWorker

__all__ = [
    "BatchingPolicy",
    "EmbeddingWorker",
    "InferenceBatcher",
    "ModelIdentity",
    "SpeakerEncoder",
    "Urgency",
    "load_encoder",
]
