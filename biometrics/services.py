"""The long-lived parts of a running service, built once and shared by every request."""

from __future__ import annotations

import dataclasses

from starlette.requests import HTTPConnection

from biometrics.audio import SpeechDetector
from biometrics.config import Settings
from biometrics.embedding import EmbeddingWorker
from biometrics.enrollment import Enroller
from biometrics.store import Database
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
        return cls(
            settings=settings,
            database=database,
            worker=worker,
            enroller=Enroller(database, worker, detector, settings),
            verifier=Verifier(database, worker, detector, settings),
        )

    def close(self) -> None:
        self.worker.close()
        self.database.dispose()


def services_of(connection: HTTPConnection) -> Services:
    return connection.app.state.services
