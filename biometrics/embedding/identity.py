"""Which model made an embedding: its source and a hash of its embedding checkpoint.

Two embeddings are comparable only when their checkpoint hashes agree; the
source is kept for people (a hub id and a local copy of it are the same model).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    source: str
    checkpoint_sha256: str
    notice: str | None = None  # shown wherever the model is named, e.g. "not for production"

    @property
    def name(self) -> str:
        return f"{self.source}@sha256:{self.checkpoint_sha256[:12]}"

    def compatible_with(self, checkpoint_sha256: str) -> bool:
        return self.checkpoint_sha256 == checkpoint_sha256

    def as_dict(self) -> dict[str, str]:
        named = {"source": self.source, "sha256": self.checkpoint_sha256, "name": self.name}
        return named if self.notice is None else {**named, "notice": self.notice}

    @classmethod
    def of_checkpoint(
        cls, source: str, checkpoint: Path, notice: str | None = None
    ) -> ModelIdentity:
        digest = hashlib.sha256()
        with checkpoint.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        return cls(source=source, checkpoint_sha256=digest.hexdigest(), notice=notice)
