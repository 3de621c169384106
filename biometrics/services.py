"""The long-lived parts of a running service, built once and shared by every request."""

from __future__ import annotations

import dataclasses

from starlette.requests import HTTPConnection

from biometrics.audio import SpeechDetector
from biometrics.config import Settings
from biometrics.embedding import EmbeddingWorker
from biometrics.enrollment import Enroller
from biometrics.scoring.scorer import Scorer
from biometrics.store import Database, queries
from biometrics.verification import Verifier


@dataclasses.dataclass
class Services:
    settings: Settings
    database: Database
    worker: EmbeddingWorker
    enroller: Enroller
    verifier: Verifier

    @classmethod
    def build(cls, settings: Settings, database: Database, worker: EmbeddingWorker) -> Services:
        detector = SpeechDetector()
        with database.session() as session:
            scorer = queries.load_scorer(
                session,
                worker.identity.checkpoint_sha256,
                target_far=settings.target_far,
                fixed_threshold=settings.threshold,
            )
        return cls(
            settings=settings,
            database=database,
            worker=worker,
            enroller=Enroller(database, worker, detector, settings),
            verifier=Verifier(database, worker, detector, settings, scorer),
        )

    @property
    def scorer(self) -> Scorer:
        return self.verifier.scorer

    def close(self) -> None:
        self.worker.close()
        self.database.dispose()


def services_of(connection: HTTPConnection) -> Services:
    return connection.app.state.services
