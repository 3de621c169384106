"""The Starlette application: routes, error handlers, limits, and the lifespan that
opens the database and loads the model."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from biometrics.api import routes
from biometrics.api.errors import exception_handlers
from biometrics.api.limits import BodySizeLimit
from biometrics.config import Settings
from biometrics.embedding import EmbeddingWorker, SpeakerEncoder, load_encoder
from biometrics.services import Services
from biometrics.store import Database

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, encoder: SpeakerEncoder | None = None
) -> Starlette:
    """Build the application. A pre-loaded ``encoder`` skips loading the model at start."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await run_in_threadpool(start_services, settings, encoder)
        app.state.services = services
        await services.start_live_calls()
        try:
            yield
        finally:
            await services.stop_live_calls()
            services.close()

    return Starlette(
        routes=routes,
        middleware=[Middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )


def start_services(settings: Settings, encoder: SpeakerEncoder | None = None) -> Services:
    database = Database(settings.database_url)
    if settings.auto_migrate:
        database.upgrade()
    if encoder is None:
        encoder = load_encoder(
            settings.model_source, settings.model_cache_dir, threads=settings.inference_threads
        )
    services = Services.build(settings, database, EmbeddingWorker(encoder))
    if services.socket_auth is None:
        logger.warning(
            "the live-call socket /ws/acs accepts unauthenticated connections; set "
            "BIOMETRICS_ACS_AUDIENCE to your ACS resource id to require ACS's signed token"
        )
    scoring = services.scorer.describe()
    if not scoring["calibrated"]:
        logger.warning(
            "no score calibration for this model: scores are cosine similarities x 100 and "
            "the threshold is a guess; run `biometrics calibrate` on trials like your calls",
            extra={"model": encoder.identity.name, **scoring},
        )
    else:
        logger.info("scoring", extra={"model": encoder.identity.name, **scoring})
    return services
