"""The commands that run and manage the service on its own machine: ``serve``, ``db
upgrade``, ``keys``, ``expire``, ``cohort`` and ``calibrate``. Each reads its settings from
the ``BIOMETRICS_*`` environment, maps its flags onto them and calls the package's own
code; a setting, database, model or port that cannot be used is one line on stderr and
exit status 2."""

from __future__ import annotations

import argparse
import dataclasses
import math
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy.exc

from biometrics.cli.options import Commands, add_command, positive_float, positive_int
from biometrics.cli.output import print_table, table, when
from biometrics.clock import isoformat, utcnow
from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.errors import ConfigError, KeyNotFound
from biometrics.logs import configure_logging
from biometrics.scoring import calibration
from biometrics.statuses import Role
from biometrics.store import Database, lifecycle, queries
from biometrics.store.audit import COMMAND_LINE, AuditLog
from biometrics.store.keys import KeyStore
from biometrics.store.recordings import RecordingFiles

if TYPE_CHECKING:
    from biometrics.evaluation.calibrate import CalibrationFit

ROTATE_DESCRIPTION = """\
Re-encrypt every voiceprint and cohort under the current encryption key
(BIOMETRICS_ENCRYPTION_KEY or BIOMETRICS_ENCRYPTION_KEY_FILE). The keys they are under now
must still be configured: list them, comma-separated, in BIOMETRICS_ENCRYPTION_OLD_KEYS.

Rows are re-encrypted in batches, each its own transaction, while the service runs. The run
is safe to interrupt and resumable: rows already under the current key are skipped. Once it
reports every row done, the old keys can be removed from BIOMETRICS_ENCRYPTION_OLD_KEYS."""

EXPIRE_DESCRIPTION = """\
Run the lifecycle sweep the service runs every BIOMETRICS_SWEEP_INTERVAL_SECONDS: speakers
with no enrollment or ACCEPT for BIOMETRICS_SPEAKER_EXPIRY_DAYS, or past their expires_at,
become EXPIRED and their voiceprints are deleted (each audited as speaker.expire); verdicts
older than BIOMETRICS_VERDICT_RETENTION_DAYS and audit rows older than
BIOMETRICS_AUDIT_RETENTION_DAYS are deleted. 0 turns each off.

It works in batches, each its own transaction, and is safe beside the running service and
to run again."""

KEYS_EXAMPLES = """\
examples:
  biometrics keys create --role stream --name acs --expires-in 365
  biometrics keys list
  biometrics keys revoke 3f9c2a71d0e4"""

Handler = Callable[[Settings, argparse.Namespace], int]


def _with_settings(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """The command, run with the environment's settings and their logging."""

    def run(args: argparse.Namespace) -> int:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        return handler(settings, args)

    return run


def register(commands: Commands) -> None:
    serve = add_command(
        commands,
        "serve",
        "run the HTTP service",
        _with_settings(lambda settings, args: _serve(settings, args.host, args.port)),
        description="Run the HTTP service: the REST API and the ACS WebSocket /ws/acs. Its "
        "settings come\nfrom BIOMETRICS_* environment variables (see the README).",
        epilog="example:\n  BIOMETRICS_DATABASE_URL=sqlite:///biometrics.db biometrics serve "
        "--port 8000",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")

    db = add_command(
        commands,
        "db",
        "manage the database schema",
        _with_settings(lambda settings, args: _db_upgrade(settings)),
    )
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply pending migrations")

    cohort = add_command(
        commands,
        "cohort",
        "build the AS-norm impostor cohort of the configured model",
        _with_settings(_build_cohort),
    )
    cohort.add_argument("data", type=Path, help="speech folder (LibriSpeech names or subfolders)")
    cohort.add_argument("--per-speaker", type=int, default=3, help="utterances per speaker")
    cohort.add_argument("--top-n", type=int, default=200, help="cohort scores averaged (top N)")
    cohort.add_argument(
        "--exclude", nargs="*", default=[], help="speaker ids to leave out (default: none)"
    )

    calibrate = add_command(
        commands,
        "calibrate",
        "fit the configured model's score calibration on development speech",
        _with_settings(_calibrate),
    )
    calibrate.add_argument(
        "data", type=Path, help="development speech, other speakers than the cohort"
    )
    calibrate.add_argument(
        "--enroll-seconds", type=float, default=20.0, help="net speech of each enrollment"
    )
    calibrate.add_argument(
        "--test-seconds",
        type=positive_float,
        nargs="+",
        default=[2.0, 3.0, 5.0, 10.0],
        help="test lengths, two or more: the duration model is fitted across them",
    )
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the trial selection")
    calibrate.add_argument(
        "--raw", action="store_true", help="calibrate raw cosine scores, ignoring the cohort"
    )

    _register_keys(commands)

    expire = add_command(
        commands,
        "expire",
        "expire unused speakers and delete the history past its retention",
        _with_settings(lambda settings, args: _expire(settings, args.dry_run)),
        description=EXPIRE_DESCRIPTION,
    )
    expire.add_argument(
        "--dry-run",
        action="store_true",
        help="count what would be expired and deleted, change nothing",
    )


def _register_keys(commands: Commands) -> None:
    keys = add_command(
        commands,
        "keys",
        "make, list and revoke API keys; rotate the voiceprints' encryption key",
        description="Make, list and revoke the API keys that every /v1 route and the "
        "live-call socket\nrequire. A key is shown once, when it is made; only a salted hash "
        "is stored.\nRoles: admin (everything), enroll, verify, read, stream (the ACS socket "
        "only),\nmetrics (GET /metrics only, for Prometheus).\nrotate-voiceprints "
        "re-encrypts the stored voiceprints under the current\n"
        "encryption key (BIOMETRICS_ENCRYPTION_KEY).",
        epilog=KEYS_EXAMPLES,
    )
    actions = keys.add_subparsers(title="actions", dest="action", required=True, metavar="ACTION")
    create = add_command(
        actions, "create", "make a key; its text is the last line printed", _with_settings(_keys)
    )
    create.add_argument(
        "--role", required=True, choices=[role.value for role in Role], help="what it may do"
    )
    create.add_argument("--name", help="who or what the key is for (default: none)")
    create.add_argument(
        "--expires-in",
        type=positive_float,
        metavar="DAYS",
        help="days until the key stops working (default: never)",
    )
    add_command(actions, "list", "list keys, never their secrets", _with_settings(_keys))
    revoke = add_command(actions, "revoke", "revoke a key at once", _with_settings(_keys))
    revoke.add_argument("key_id", help="the key id, as `keys list` shows it")
    rotate = add_command(
        actions,
        "rotate-voiceprints",
        "re-encrypt every voiceprint and cohort under the current encryption key",
        _with_settings(lambda settings, args: _rotate_voiceprints(settings, args.batch_size)),
        description=ROTATE_DESCRIPTION,
    )
    rotate.add_argument("--batch-size", type=positive_int, default=200, help="rows per transaction")


def _serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from biometrics.app import create_service, open_cipher
    from biometrics.serving import GracefulServer

    # Take the port first: a busy one is one line now, not a traceback after the model
    # loaded. The socket is handed to uvicorn, so nothing can take the port meanwhile.
    listener = _bind(host, port)
    with listener:
        database, encoder = _prepared(settings)
        # A wrong encryption key stops the start here, before an API key is made.
        cipher = open_cipher(settings, database)
        if settings.auth_enabled:
            first_admin_key(KeyStore(database), host, port, AuditLog(database))
        service = create_service(
            dataclasses.replace(settings, auto_migrate=False), encoder=encoder, cipher=cipher
        )
        config = uvicorn.Config(
            service.app,
            host=host,
            port=port,
            log_config=None,
            ws_max_size=settings.stream_max_message_bytes,
            # How long live calls get to end (their final verdicts) once a stop is asked.
            timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_seconds),
        )
        GracefulServer(config, service.drain).run(sockets=[listener])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
    except (OSError, OverflowError) as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        listener.bind(address)
    except OSError as error:
        listener.close()
        reason = error.strerror or str(error)
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason} (is another server running there? "
            "choose another with --port)"
        ) from None
    return listener


def first_admin_key(keys: KeyStore, host: str, port: int, audit: AuditLog) -> None:
    """On a database that never had a key, make one admin key and show it, once."""
    if keys.count():
        return
    info, secret = keys.create(Role.ADMIN, name="first admin key")
    audit.record(COMMAND_LINE, "key.create", info.key_id, "ok")
    url = f"http://{host}:{port}"
    print(
        "\nThis is the first start on this database: an admin API key was made. It is shown\n"
        "this once (only its hash is kept); store it now. Use it as a bearer token:\n\n"
        f"    curl -H 'Authorization: Bearer {secret}' {url}/v1/speakers\n\n"
        "Make keys with narrower roles with `biometrics keys create --role ROLE`.\n\n"
        f"{secret}\n",
        flush=True,
    )


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    database = _open_database(settings)
    keys, audit = KeyStore(database), AuditLog(database)
    if args.action == "create":
        expires = None if args.expires_in is None else timedelta(days=args.expires_in)
        info, secret = keys.create(Role(args.role), args.name, expires)
        audit.record(COMMAND_LINE, "key.create", info.key_id, "ok")
        print(f"key {info.key_id} ({info.role}) made; it is shown this once:")
        print(secret)
        return 0
    if args.action == "revoke":
        try:
            info = keys.revoke(args.key_id)
        except KeyNotFound as error:
            audit.record(COMMAND_LINE, "key.revoke", args.key_id, error.code)
            raise
        audit.record(COMMAND_LINE, "key.revoke", info.key_id, "ok")
        print(f"key {info.key_id} ({info.role}) revoked at {isoformat(info.revoked_at)}")
        return 0
    shown = table("KEY ID", "ROLE", "NAME", "CREATED", "EXPIRES", "STATE", "LAST USED")
    now = utcnow()
    for info in keys.list():
        state = "revoked" if info.revoked_at else ("usable" if info.usable(now) else "expired")
        shown.add_row(
            info.key_id,
            info.role.value,
            info.name or "",
            when(info.created_at),
            when(info.expires_at, "never"),
            state,
            when(info.last_used_at, "never"),
        )
    print_table(shown)
    return 0


def _rotate_voiceprints(settings: Settings, batch_size: int) -> int:
    from biometrics.app import open_cipher
    from biometrics.store.vault import Progress, reencrypt

    database = _open_database(settings)
    cipher = open_cipher(settings, database)

    def report(progress: Progress) -> None:
        print(f"{progress.table}: {progress.done}/{progress.total} re-encrypted", flush=True)

    done = reencrypt(database, cipher, batch_size=batch_size, report=report)
    # The subject is the voiceprint key now in use: its id, never the key.
    AuditLog(database).record(COMMAND_LINE, "key.rotate", cipher.key_id, "ok")
    print(
        f"{_counted(done.voiceprints, 'voiceprint')} and {_counted(done.cohorts, 'cohort')} "
        f"re-encrypted under key {cipher.key_id}; every voiceprint and cohort is now under it"
    )
    if done.recordings:
        print(f"the keys of {_counted(done.recordings, 'call recording')} were re-sealed too")
    return 0


def _expire(settings: Settings, dry_run: bool) -> int:
    report = lifecycle.sweep(
        _open_database(settings),
        lifecycle.SpeakerExpiry(settings.speaker_expiry_days),
        lifecycle.Retention(
            settings.verdict_retention_days,
            settings.audit_retention_days,
            settings.recordings_retention_days,
        ),
        origin=COMMAND_LINE,
        dry_run=dry_run,
        recordings=RecordingFiles(settings.recordings_dir),
    )
    done = "would be " if dry_run else ""
    print(
        f"{_counted(report.speakers_expired, 'speaker')} {done}expired (voiceprints deleted), "
        f"{_counted(report.verdicts_deleted, 'verdict')} and "
        f"{_counted(report.audit_rows_deleted, 'audit row')} past retention {done}deleted"
        + (
            f", {_counted(report.recordings_deleted, 'call recording')} {done}deleted"
            if report.recordings_deleted
            else ""
        )
        + ("; nothing was changed (--dry-run)" if dry_run else "")
    )
    return 0


def _counted(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _db_upgrade(settings: Settings) -> int:
    _open_database(settings)
    return 0


def _open_database(settings: Settings) -> Database:
    """The database, reachable (and upgraded if ``auto_migrate``); ConfigError if not."""
    database = Database(settings.database_url)
    try:
        if settings.auto_migrate:
            database.upgrade()
        else:
            database.ping()
    except sqlalchemy.exc.SQLAlchemyError as error:
        database.dispose()
        shown = database.engine.url.render_as_string(hide_password=True)
        reason = " ".join(str(getattr(error, "orig", None) or error).split())
        raise ConfigError(
            f"cannot use the database {shown} (BIOMETRICS_DATABASE_URL): {reason}"
        ) from None
    return database


def _prepared(settings: Settings) -> tuple[Database, SpeakerEncoder]:
    database = _open_database(settings)
    encoder = load_encoder(
        settings.model_source,
        settings.model_cache_dir,
        threads=settings.inference_threads,
        precision=settings.inference_precision,
    )
    return database, encoder


def _build_cohort(settings: Settings, args: argparse.Namespace) -> int:
    from biometrics.app import open_cipher
    from biometrics.evaluation.calibrate import build_cohort
    from biometrics.evaluation.run import encoder_embedder

    _require_folder(args.data)
    database, encoder = _prepared(settings)
    cipher = open_cipher(settings, database)
    cohort = build_cohort(
        encoder_embedder(encoder, settings.model_source).pool,
        args.data,
        per_speaker=args.per_speaker,
        exclude=args.exclude,
        top_n=args.top_n,
    )
    with database.session() as session:
        queries.save_cohort(
            session,
            cipher,
            encoder.identity.checkpoint_sha256,
            cohort.embeddings,
            cohort.top_n,
            str(args.data),
        )
    print(f"cohort of {len(cohort.embeddings)} embeddings stored for {encoder.identity.name}")
    return 0


def _calibrate(settings: Settings, args: argparse.Namespace) -> int:
    from biometrics.app import load_scorer, open_cipher
    from biometrics.evaluation.calibrate import as_norm_scorer, fit_calibration
    from biometrics.evaluation.protocol import cosine_trials, find_speakers, load_speech
    from biometrics.evaluation.run import encoder_embedder, evaluate

    _require_folder(args.data)
    database, encoder = _prepared(settings)
    sha = encoder.identity.checkpoint_sha256
    scorer = load_scorer(
        database, open_cipher(settings, database), encoder, settings.target_far, None
    )
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
    try:
        fit = fit_calibration(evaluations, normalized=cohort is not None)
    except ValueError as error:
        raise ConfigError(f"{args.data}: {error}") from None
    body = calibration.to_body(fit.calibration)
    with database.session() as session:
        queries.save_calibration(
            session,
            sha,
            queries.StoredCalibration(
                fit.calibration.slope,
                fit.calibration.intercept,
                fit.calibration.normalized,
                fit.calibration.thresholds,
                format=body["format"],
                duration=body["duration"],
            ),
            description=str(args.data),
            eer=fit.eer,
            target_trials=fit.target_trials,
            nontarget_trials=fit.nontarget_trials,
        )
    print(describe_fit(encoder.identity.name, fit, settings.target_far))
    return 0


def describe_fit(model: str, fit: CalibrationFit, target_far: float) -> str:
    """What was fitted, in words an operator can check against docs/accuracy.md."""
    fitted = fit.calibration
    scores = "AS-norm" if fitted.normalized else "raw cosine"
    lines = [
        f"calibration stored for {model}: duration-aware (format {calibration.FORMAT}), "
        f"on {scores} scores, {fit.target_trials} target / {fit.nontarget_trials} "
        f"non-target trials, development EER {100 * fit.eer:.2f} %",
        "impostor scores by test length (the duration model):",
    ]
    lines += [
        f"  {length.test_seconds:g} s: centre {length.impostor_centre:.3f}, spread "
        f"{length.impostor_spread:.3f} ({length.target_trials} target / "
        f"{length.nontarget_trials} non-target trials, EER {100 * length.eer:.2f} %)"
        for length in fit.lengths
    ]
    lines.append(f"slope {fitted.slope:.2f} per impostor spread, intercept {fitted.intercept:.2f}")
    fars = sorted({0.01, target_far}, reverse=True)
    lines += [
        f"threshold for {100 * far:g} % target FAR: {fitted.threshold_for_far(far):.1f} "
        "(the same at every test length)"
        for far in fars
    ]
    return "\n".join(lines)


def _require_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of speech")
