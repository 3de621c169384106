"""The ``biometrics`` command: ``serve``, ``db upgrade``, ``cohort`` and ``calibrate``.

It maps flags onto :class:`Settings` and calls the package's own code."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.errors import BiometricsError, ConfigError
from biometrics.logs import configure_logging
from biometrics.store import Database, queries

logger = logging.getLogger("biometrics")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="biometrics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"], help="apply pending migrations")
    cohort = commands.add_parser(
        "cohort", help="build the AS-norm impostor cohort of the configured model"
    )
    cohort.add_argument("data", type=Path, help="speech folder (LibriSpeech names or subfolders)")
    cohort.add_argument("--per-speaker", type=int, default=3)
    cohort.add_argument("--top-n", type=int, default=200)
    cohort.add_argument("--exclude", nargs="*", default=[], help="speaker ids to leave out")
    calibrate = commands.add_parser(
        "calibrate", help="fit the configured model's score calibration on development speech"
    )
    calibrate.add_argument(
        "data", type=Path, help="development speech, other speakers than the cohort"
    )
    calibrate.add_argument("--enroll-seconds", type=float, default=20.0)
    calibrate.add_argument("--test-seconds", type=float, nargs="+", default=[3.0, 5.0])
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument(
        "--raw", action="store_true", help="calibrate raw cosine scores, ignoring the cohort"
    )
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        if args.command == "cohort":
            return _build_cohort(settings, args)
        if args.command == "calibrate":
            return _calibrate(settings, args)
        return _db_upgrade(settings)
    except BiometricsError as error:
        print(f"biometrics: error: {error.detail}", file=sys.stderr)
        return 2


def _serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from biometrics.app import create_app

    # Fail before binding the port when the database or model is unusable.
    _, encoder = _prepared(settings)
    app = create_app(dataclasses.replace(settings, auto_migrate=False), encoder=encoder)
    uvicorn.run(
        app, host=host, port=port, log_config=None, ws_max_size=settings.stream_max_message_bytes
    )
    return 0


def _db_upgrade(settings: Settings) -> int:
    Database(settings.database_url).upgrade()
    return 0


def _prepared(settings: Settings) -> tuple[Database, SpeakerEncoder]:
    database = Database(settings.database_url)
    if settings.auto_migrate:
        database.upgrade()
    encoder = load_encoder(
        settings.model_source, settings.model_cache_dir, threads=settings.inference_threads
    )
    return database, encoder


def _build_cohort(settings: Settings, args: argparse.Namespace) -> int:
    from biometrics.embedding.pooling import pool_speech
    from biometrics.evaluation.calibrate import build_cohort

    _require_folder(args.data)
    database, encoder = _prepared(settings)
    cohort = build_cohort(
        lambda speech: pool_speech(encoder.embed, speech)[0],
        args.data,
        per_speaker=args.per_speaker,
        exclude=args.exclude,
        top_n=args.top_n,
    )
    with database.session() as session:
        queries.save_cohort(
            session,
            encoder.identity.checkpoint_sha256,
            cohort.embeddings,
            cohort.top_n,
            str(args.data),
        )
    print(f"cohort of {len(cohort.embeddings)} embeddings stored for {encoder.identity.name}")
    return 0


def _calibrate(settings: Settings, args: argparse.Namespace) -> int:
    from biometrics.app import load_scorer
    from biometrics.evaluation.calibrate import as_norm_scorer, fit_calibration
    from biometrics.evaluation.protocol import cosine_trials, find_speakers, load_speech
    from biometrics.evaluation.run import encoder_embedder, evaluate

    _require_folder(args.data)
    database, encoder = _prepared(settings)
    sha = encoder.identity.checkpoint_sha256
    scorer = load_scorer(database, encoder, settings.target_far, None)
    cohort = None if args.raw else scorer.cohort
    evaluations = evaluate(
        encoder_embedder(encoder, settings.model_source),
        load_speech(find_speakers(args.data)),
        args.test_seconds,
        enroll_seconds=args.enroll_seconds,
        seed=args.seed,
        score=cosine_trials if cohort is None else as_norm_scorer(cohort),
    )
    if not evaluations:
        raise ConfigError(f"{args.data} holds too little speech for any trial")
    fit = fit_calibration(evaluations, normalized=cohort is not None)
    with database.session() as session:
        queries.save_calibration(
            session,
            sha,
            queries.StoredCalibration(
                fit.calibration.slope,
                fit.calibration.intercept,
                fit.calibration.normalized,
                fit.calibration.thresholds,
            ),
            description=str(args.data),
            eer=fit.eer,
            target_trials=fit.target_trials,
            nontarget_trials=fit.nontarget_trials,
        )
    threshold = fit.calibration.threshold_for_far(settings.target_far)
    print(
        f"calibration stored for {encoder.identity.name}: "
        f"{'AS-norm' if cohort is not None else 'raw cosine'} scores, "
        f"{fit.target_trials} target / {fit.nontarget_trials} non-target trials, "
        f"development EER {100 * fit.eer:.2f} %, threshold at FAR "
        f"{100 * settings.target_far:g} %: {threshold:.1f}"
    )
    return 0


def _require_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of speech")
