"""The long-lived parts of a running service, built once and shared by every request."""

from __future__ import annotations

import dataclasses

from starlette.requests import HTTPConnection

from biometrics.audio import SpeechDetector
from biometrics.config import Settings
from biometrics.embedding import EmbeddingWorker
from biometrics.enrollment import Enroller
from biometrics.events import Broker
from biometrics.events.webhooks import RetryPolicy, WebhookSender
from biometrics.scoring import calibration
from biometrics.scoring.scorer import Scorer
from biometrics.store import Database, queries
from biometrics.streaming.auth import SocketAuthenticator
from biometrics.streaming.backend import ServiceBackend
from biometrics.streaming.decisions import DecisionSchedule
from biometrics.streaming.judge import Judge
from biometrics.streaming.publisher import CallPublisher
from biometrics.streaming.recorder import CallRecorder
from biometrics.streaming.registry import CallRegistry
from biometrics.verification import Verifier


@dataclasses.dataclass
class Services:
    settings: Settings
    database: Database
    worker: EmbeddingWorker
    enroller: Enroller
    verifier: Verifier
    # Live calls: their state, their events, their storage, and webhooks if configured.
    calls: CallRegistry
    broker: Broker
    recorder: CallRecorder
    webhooks: WebhookSender | None
    socket_auth: SocketAuthenticator | None

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
        shipped = worker.encoder.folder / calibration.FOLDER_FILE
        if scorer.calibration is None and shipped.is_file():
            scorer = dataclasses.replace(scorer, calibration=calibration.read_json(shipped))
        enroller = Enroller(database, worker, detector, settings)
        verifier = Verifier(database, worker, detector, settings, scorer)
        broker = Broker()
        recorder = CallRecorder(database)
        judge = Judge(verifier, worker, DecisionSchedule.from_settings(settings))
        calls = CallRegistry(
            settings,
            backend=ServiceBackend(judge, enroller, database),
            observer=CallPublisher(broker, recorder),
            recorder=recorder,
            broker=broker,
        )
        webhooks = None
        if settings.webhook_url_list:
            webhooks = WebhookSender(
                broker,
                settings.webhook_url_list,
                settings.webhook_secret or "",
                RetryPolicy(settings.webhook_max_attempts, settings.webhook_backoff_seconds),
                settings.webhook_timeout_seconds,
            )
        socket_auth = None
        if settings.acs_audience:
            socket_auth = SocketAuthenticator(
                settings.acs_audience, settings.acs_issuer, settings.acs_jwks_url
            )
        return cls(
            settings=settings,
            database=database,
            worker=worker,
            enroller=enroller,
            verifier=verifier,
            calls=calls,
            broker=broker,
            recorder=recorder,
            webhooks=webhooks,
            socket_auth=socket_auth,
        )

    @property
    def scorer(self) -> Scorer:
        return self.verifier.scorer

    async def start_live_calls(self) -> None:
        """Start the tasks of live calls (forgetting ended calls, delivering webhooks)."""
        self.calls.start()
        if self.webhooks is not None:
            self.webhooks.start()

    async def stop_live_calls(self) -> None:
        await self.calls.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        self.broker.close()

    def close(self) -> None:
        self.worker.close()
        self.recorder.close()
        self.database.dispose()


def services_of(connection: HTTPConnection) -> Services:
    return connection.app.state.services
