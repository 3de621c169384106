"""Embedding a growing stream of speech once: each decision embeds only the speech added
since the last one, pooled by speech with what was embedded before.

A live participant is judged several times on ever more speech (3, 5, 7, 9 and 10 s by
default). Re-embedding the whole window each time passes 34 s of audio through the model
for 10 s of speech; embedding each new stretch once passes 10 s. The first embedding of a
stream is of all its speech, exactly as an upload's, so the first verdict is unchanged.
Speech added since the last embedding is embedded on its own only when it has at least
``MIN_SEGMENT_SAMPLES`` (a shorter stretch says little about a voice and would weigh on
the mean as noise): otherwise the whole speech is embedded afresh. No new speech reuses
the last embedding without running the model.
"""

from __future__ import annotations

from biometrics.embedding.pooling import MIN_SEGMENT_SAMPLES, SpeechEmbedding, accumulate


class IncrementalEmbedding:
    """The pooled embedding of the first ``samples`` of one stream's speech. Not shared:
    one stream, one embedding at a time; a stream that starts over (a new claim) takes a
    new one."""

    def __init__(self) -> None:
        self.embedding: SpeechEmbedding | None = None
        self.samples = 0

    def start(self, total: int) -> int:
        """Where the speech still to embed begins, for a stream of ``total`` samples whose
        beginning is the speech embedded so far: 0 to embed it all afresh."""
        added = total - self.samples
        if self.embedding is None or added < 0 or 0 < added < MIN_SEGMENT_SAMPLES:
            return 0
        return self.samples

    def add(self, new: SpeechEmbedding | None, start: int, total: int) -> SpeechEmbedding:
        """Take the embedding ``new`` of samples ``start:total`` (None when there were none)
        and return the embedding of all ``total`` samples."""
        if new is None:
            assert self.embedding is not None and start == total == self.samples
            return self.embedding
        pooled = new if start == 0 or self.embedding is None else accumulate(self.embedding, new)
        self.embedding, self.samples = pooled, total
        return pooled
