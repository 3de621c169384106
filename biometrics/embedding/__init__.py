"""Speaker embeddings: the model folder, its loading through SpeechBrain, its identity,
and the worker that keeps inference off the event loop."""

from biometrics.embedding.encoder import SpeakerEncoder, load_encoder
from biometrics.embedding.identity import ModelIdentity
from biometrics.embedding.worker import EmbeddingWorker

__all__ = ["EmbeddingWorker", "ModelIdentity", "SpeakerEncoder", "load_encoder"]
