"""The application: every part of the service built once, each handed what it needs, and
the routes that use them, in one place to read (as Starlette's own ``applications.py``).

Nothing is looked up later: no part reaches into ``app.state`` or a container. Each part
gets its own small configuration from :class:`~biometrics.config.Settings`, never the
whole object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute

from biometrics.api import health
from biometrics.api.audit import Auditor, AuditRoutes
from biometrics.api.auth import Guard, RateLimit
from biometrics.api.call_tokens import CallTokenRoutes
from biometrics.api.calls import CallRoutes
from biometrics.api.docs import Docs
from biometrics.api.errors import exception_handlers
from biometrics.api.limits import BodyLimits
from biometrics.api.metrics import MetricsRoute
from biometrics.api.recordings import RecordingRoutes
from biometrics.api.request_id import RequestId
from biometrics.api.speakers import SpeakerRoutes
from biometrics.api.verify import VERIFY, VerifyRoute
from biometrics.api.webhooks import WebhookRoutes
from biometrics.cluster.state import SharedState
from biometrics.config import Settings
from biometrics.console.routes import Console, CookiePolicy, SpeechTargets
from biometrics.console.sessions import ConsoleSessions
from biometrics.embedding import (
    BatchingPolicy,
    EmbeddingWorker,
    InferenceBatcher,
    SpeakerEncoder,
    load_encoder,
)
from biometrics.enrollment import Enroller
from biometrics.events import Broker
from biometrics.events.broker import HISTORY_SIZE
from biometrics.events.dead_letter_writer import DeadLetterWriter
from biometrics.events.publisher import CallPublisher
from biometrics.events.webhooks import RetryPolicy, WebhookSender
from biometrics.metrics import Metrics
from biometrics.scoring import calibration
from biometrics.scoring.normalization import Cohort
from biometrics.scoring.scorer import Scorer
from biometrics.statuses import Role
from biometrics.store import Database, lifecycle, queries
from biometrics.store.audit import AuditLog
from biometrics.store.call_tokens import CallTokens
from biometrics.store.calls import CallStore
from biometrics.store.crypto import Cipher, load_keyring
from biometrics.store.dead_letters import DeadLetters
from biometrics.store.keys import KeyStore, RecentKeyStore
from biometrics.store.lifecycle import Retention, SpeakerExpiry
from biometrics.store.recordings import RecordingFiles, Recordings
from biometrics.store.spool import Spool
from biometrics.store.vault import open_vault
from biometrics.store.verdicts import VerdictHistory
from biometrics.streaming.auth import SocketAuthenticator, SocketGate, SocketQuota
from biometrics.streaming.endpoint import AcsStream, StreamLimits
from biometrics.streaming.identity import AliasDirectory
from biometrics.streaming.participant import CallServices
from biometrics.streaming.registry import CallLimits, CallRegistry
from biometrics.streaming.schedule import DecisionSchedule
from biometrics.sweeper import PeriodicSweep
from biometrics.verification import VerdictAudit, VerificationPolicy, VerificationService

logger = logging.getLogger(__name__)

AUTH_OFF_WARNING = (
    "authentication is off (BIOMETRICS_AUTH_ENABLED=false): anyone who can reach the port "
    "can read, enroll, verify and delete voiceprints and stream calls; development only"
)


@dataclasses.dataclass(frozen=True)
class Service:
    """The application, and what its server calls when it starts to stop: before the
    sockets close, so that the calls they end get their final verdicts."""

    app: Starlette
    drain: Callable[[], None]


def create_app(
    settings: Settings, encoder: SpeakerEncoder | None = None, cipher: Cipher | None = None
) -> Starlette:
    """Build the application. A pre-loaded ``encoder`` skips loading the model; a
    ``cipher`` already opened on this database skips checking the keys again."""
    return create_service(settings, encoder, cipher).app


def create_service(
    settings: Settings, encoder: SpeakerEncoder | None = None, cipher: Cipher | None = None
) -> Service:
    """:func:`create_app`, with the server's hook to drain the live calls."""
    database = Database(settings.database_url)
    if settings.auto_migrate:
        database.upgrade()
    if cipher is None:
        cipher = open_cipher(settings, database)
    if encoder is None:
        encoder = load_encoder(
            settings.model_source,
            settings.model_cache_dir,
            threads=settings.inference_threads,
            precision=settings.inference_precision,
        )
    # This application's metrics (/metrics): the parts below report into it.
    metrics = Metrics()
    metrics.model({**encoder.identity.as_dict(), "precision": settings.inference_precision})
    # Every embedding (REST, live verdicts, enrollment) goes through one batcher.
    batching = BatchingPolicy(
        settings.inference_max_batch, settings.inference_max_wait_ms, settings.inference_queue_max
    )
    worker = EmbeddingWorker(InferenceBatcher(encoder, batching), metrics)
    scorer = load_scorer(database, cipher, encoder, settings.target_far, settings.threshold)
    announce_scoring(encoder, scorer)

    # Verdicts and audit rows wait here while the database is unreachable.
    spool = Spool(database, settings.spool_max_rows)
    history = VerdictHistory(database, spool)
    audit_log = AuditLog(database, spool)
    expiry = SpeakerExpiry(settings.speaker_expiry_days)
    auditor = Auditor(audit_log)
    verifier = VerificationService(
        database,
        cipher,
        worker,
        scorer,
        VerificationPolicy(
            min_speech_seconds=settings.min_verify_speech_seconds,
            min_snr_db=settings.min_snr_db,
            max_clipping_ratio=settings.max_clipping_ratio,
            lockout_failures=settings.lockout_failures,
            lockout_window_seconds=settings.lockout_window_seconds,
            expiry=expiry,
        ),
        history,
        audit=VerdictAudit(audit_log),
        metrics=metrics,
    )
    enroller = Enroller(database, cipher, worker, settings.min_enroll_speech_seconds, expiry)
    # Kept only for calls an operator records (globally, or each call by an admin).
    recordings = Recordings(
        database,
        cipher,
        RecordingFiles(settings.recordings_dir),
        default=settings.recordings,
        max_pending_bytes=settings.recordings_max_pending_bytes,
    )
    sweeper = None
    if settings.sweep_interval_seconds:
        retention = Retention(
            settings.verdict_retention_days,
            settings.audit_retention_days,
            settings.recordings_retention_days,
        )
        sweeper = PeriodicSweep(
            lambda stop: lifecycle.sweep(
                database,
                expiry,
                retention,
                stop=stop,
                on_expired=verifier.claims.forget,
                recordings=recordings.files,
            ),
            settings.sweep_interval_seconds,
        )

    # Several replicas: calls, events and webhooks are shared through Redis; the broker
    # then only hands events to this replica's SSE subscribers (Redis keeps the history).
    retry = RetryPolicy(settings.webhook_max_attempts, settings.webhook_backoff_seconds)
    broker = Broker(history_size=0 if settings.redis_url else HISTORY_SIZE)
    shared = None
    if settings.redis_url:
        shared = SharedState(
            settings.redis_url,
            broker,
            lease_seconds=settings.redis_lease_seconds,
            events_ttl_seconds=settings.redis_events_ttl_seconds,
            webhooks=bool(settings.webhook_url_list),
            webhook_claim_idle_seconds=retry.longest_seconds(settings.webhook_timeout_seconds),
        )
    call_store = CallStore(database)
    calls = CallRegistry(
        CallLimits(
            max_calls=settings.stream_max_calls,
            max_participants=settings.stream_max_participants,
            retention_seconds=settings.stream_retention_seconds,
            trim_memory=settings.memory_trim,
        ),
        CallServices(
            verifier=verifier,
            enroller=enroller,
            find_alias=AliasDirectory(database).find,
            schedule=DecisionSchedule.of_seconds(
                settings.min_verify_speech_seconds,
                settings.stream_step_seconds,
                settings.stream_max_speech_seconds,
            ),
            incremental_embedding=settings.live_embedding == "incremental",
            recordings=recordings,
        ),
        call_store,
        CallPublisher(broker if shared is None else shared.events),
        broker,
        *([] if shared is None else [shared.ownership]),
    )
    dead_letters = DeadLetters(database)
    webhooks = None
    if settings.webhook_url_list:
        webhooks = WebhookSender(
            broker if shared is None else shared.webhook_feed,
            settings.webhook_url_list,
            settings.webhook_secret or "",
            retry,
            settings.webhook_timeout_seconds,
            DeadLetterWriter(dead_letters),
        )
    metrics.watch(inference=worker.batcher, calls=calls, spool=spool, webhooks=webhooks)
    keys = KeyStore(database)
    limit = RateLimit(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
    # Call tokens are signed under a secret derived from the current voiceprint key.
    tokens = CallTokens(cipher.keyring.current)
    guard = Guard(keys, settings.auth_enabled, auditor, tokens, limit)
    acs = None
    if settings.acs_audience:
        acs = SocketAuthenticator(
            settings.acs_audience,
            settings.acs_issuer,
            settings.acs_jwks_url,
            settings.acs_jwks_file,
        )
    # Sockets remember the keys checked lately, so that calls reconnect through an outage.
    gate = SocketGate(RecentKeyStore(database) if settings.auth_enabled else None, acs, tokens)
    if not settings.auth_enabled:
        logger.warning(AUTH_OFF_WARNING)

    verify = VerifyRoute(verifier, settings.max_audio_seconds, auditor).verify
    auth_warning = None if settings.auth_enabled else AUTH_OFF_WARNING
    routes = [
        *health.Readiness(
            database,
            encoder.identity,
            scorer,
            auth_warning,
            spool,
            worker.batcher,
            None if shared is None else shared.ping,
        ).routes(),
        *Docs().routes(),
        *SpeakerRoutes(
            database,
            enroller,
            settings.max_audio_seconds,
            auditor,
            verifier.claims.forget,
            recordings,
        ).routes(guard),
        guard.route("/v1/verify", Role.VERIFY, verify, "POST", VERIFY),
        *CallTokenRoutes(tokens, auditor, settings.auth_enabled).routes(guard),
        *RecordingRoutes(recordings, calls, auditor).routes(guard),  # before the call routes
        *CallRoutes(
            calls,
            call_store,
            history,
            database,
            broker,
            auditor,
            None if shared is None else shared.events,
        ).routes(guard),
        *AuditRoutes(audit_log).routes(guard),
        *WebhookRoutes(dead_letters, webhooks, auditor).routes(guard),
        WebSocketRoute(
            "/ws/acs",
            AcsStream(
                calls,
                StreamLimits(
                    max_message_bytes=settings.stream_max_message_bytes,
                    metadata_timeout_seconds=settings.stream_metadata_timeout_seconds,
                    idle_timeout_seconds=settings.stream_idle_timeout_seconds,
                ),
                gate,
                SocketQuota(settings.stream_max_sockets_per_key),
                audit_log,
                metrics,
            ).serve,
        ),
        MetricsRoute(metrics, settings.metrics_public).route(guard),
    ]

    # The agent console: pages over the routes above, signed in under a key derived from
    # the current voiceprint key (as call tokens are).
    console = Console(
        guard,
        CookiePolicy(
            ConsoleSessions(cipher.keyring.current, settings.console_session_minutes * 60),
            settings.console_secure_cookie,
        ),
        calls,
        call_store,
        history,
        database,
        SpeechTargets(
            first_seconds=settings.min_verify_speech_seconds,
            final_seconds=settings.stream_max_speech_seconds,
            enroll_seconds=settings.min_enroll_speech_seconds,
        ),
        recordings,
    )
    routes = [*routes, *console.routes(routes)]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        spool.start()
        if shared is not None:
            shared.start()
        calls.start()
        if webhooks is not None:
            webhooks.start()
        if sweeper is not None:
            sweeper.start()
        try:
            yield
        finally:
            # The sweep first (it stops after its batch), then calls (their last
            # verdicts, written or spooled), then the rows that waited for the database,
            # then the events still to deliver.
            if sweeper is not None:
                await sweeper.stop()
            finalised = await calls.stop()
            await run_in_threadpool(recordings.close)  # the ended calls' recordings complete
            spooled = await run_in_threadpool(spool.stop)
            if webhooks is not None:
                await webhooks.stop(settings.webhook_drain_seconds)
            if shared is not None:
                await shared.close()
            broker.close()
            worker.close()
            call_store.close()
            database.dispose()
            logger.info(
                "shutdown complete",
                extra={
                    "calls_finalised": finalised.calls,
                    "final_verdicts": finalised.final_verdicts,
                    "spool_written": spooled.written,
                    "spool_left": spooled.pending,
                    "spool_dropped": spooled.dropped,
                    "calls_unsaved": call_store.unsaved,
                },
            )

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestId),
            Middleware(
                BodyLimits,
                max_bytes=settings.max_upload_bytes,
                timeout_seconds=settings.upload_timeout_seconds,
            ),
        ],
        exception_handlers=exception_handlers(metrics.database_error),
        lifespan=lifespan,
    )
    return Service(app, calls.drain)


def open_cipher(settings: Settings, database: Database) -> Cipher:
    """The cipher of the configured keys, checked against the database (a wrong key stops
    the start), after the database's plain vectors, if any, were encrypted."""
    keyring = load_keyring(
        settings.encryption_key,
        settings.encryption_key_file,
        settings.encryption_old_key_list,
        settings.database_url,
    )
    return open_vault(database, Cipher(keyring))


def load_scorer(
    database: Database,
    cipher: Cipher,
    encoder: SpeakerEncoder,
    target_far: float,
    fixed_threshold: float | None,
) -> Scorer:
    """The model's scoring policy: the cohort and calibration stored for it, else the
    calibration its folder ships, else none (cosine x 100)."""
    sha256 = encoder.identity.checkpoint_sha256
    with database.session() as session:
        stored_cohort = queries.load_cohort(session, cipher, sha256)
        stored_calibration = queries.load_calibration(session, sha256)
    cohort = (
        None if stored_cohort is None else Cohort(stored_cohort.embeddings, stored_cohort.top_n)
    )
    fitted = None
    if stored_calibration is not None:
        # The same reader as a model folder's file: format 1 rows keep loading as the plain
        # map, format 2 ones bring their duration model.
        fitted = calibration.from_body(
            dataclasses.asdict(stored_calibration),
            f"the calibration stored for model {sha256[:12]}",
        )
    shipped = encoder.folder / calibration.FOLDER_FILE
    if fitted is None and shipped.is_file():
        fitted = calibration.read_json(shipped)
    return Scorer(cohort, fitted, target_far, fixed_threshold)


def announce_scoring(encoder: SpeakerEncoder, scorer: Scorer) -> None:
    scoring = scorer.describe()
    if not scorer.calibrated:
        logger.warning(
            "no score calibration for this model: scores are cosine similarities x 100 and "
            "the threshold is a guess; run `biometrics calibrate` on trials like your calls",
            extra={"model": encoder.identity.name, **scoring},
        )
    else:
        logger.info("scoring", extra={"model": encoder.identity.name, **scoring})
