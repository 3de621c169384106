"""The ``biometrics`` command: ``serve`` and ``db upgrade``. It maps flags onto
:class:`Settings` and does nothing the application factory does not."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from biometrics.config import Settings
from biometrics.errors import BiometricsError
from biometrics.logs import configure_logging

logger = logging.getLogger("biometrics")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="biometrics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"], help="apply pending migrations")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        return _db_upgrade(settings)
    except BiometricsError as error:
        print(f"biometrics: error: {error.detail}", file=sys.stderr)
        return 2


def _serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from biometrics.app import create_app
    from biometrics.embedding import load_encoder
    from biometrics.store import Database

    # Fail before binding the port when the database or model is unusable.
    if settings.auto_migrate:
        Database(settings.database_url).upgrade()
    encoder = load_encoder(
        settings.model_source, settings.model_cache_dir, threads=settings.inference_threads
    )
    app = create_app(dataclasses.replace(settings, auto_migrate=False), encoder=encoder)
    uvicorn.run(app, host=host, port=port, log_config=None)
    return 0


def _db_upgrade(settings: Settings) -> int:
    from biometrics.store import Database

    Database(settings.database_url).upgrade()
    return 0
