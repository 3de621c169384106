"""The ``biometrics`` command.

Run and manage the service: ``serve``, ``db upgrade``, ``cohort`` and ``calibrate`` map flags
onto ``Settings`` and call the package's own code. Talk to a running service: ``enroll``,
``verify`` and ``simulate-call`` are thin over ``biometrics.bulk_enrollment``,
``biometrics.client`` and ``biometrics.simulator``.

Exit status: 0 on success; 1 when the work was done but failed (a speaker not enrolled, a
voice not accepted, a call closed by the server); 2 for usage and start-up errors (bad
arguments or configuration, a database, model, port or service that cannot be used).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import sqlalchemy.exc

from biometrics import bulk_enrollment, simulator
from biometrics.client import (
    DEFAULT_URL,
    Client,
    ClientError,
    RetryPolicy,
)
from biometrics.clock import isoformat, utcnow
from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.errors import BiometricsError, ConfigError, KeyNotFound
from biometrics.logs import configure_logging
from biometrics.statuses import Role
from biometrics.store import Database, lifecycle, queries
from biometrics.store.audit import COMMAND_LINE, AuditLog
from biometrics.store.keys import KeyStore

logger = logging.getLogger("biometrics")

API_KEY_VARIABLE = "BIOMETRICS_API_KEY"


class UsageError(Exception):
    """Wrong input, or no service to talk to: nothing was done."""


ENROLL_DESCRIPTION = """\
Bulk-enroll recordings through a running biometrics service's REST API.

SOURCE is a folder with one subfolder per speaker (the subfolder's name is the speaker_id,
its .wav, .flac and .ogg files, taken in name order, are that speaker's recordings):

    recordings/alice/call-1.wav
    recordings/alice/call-2.flac
    recordings/bob/intro.ogg

or a CSV manifest with the header speaker_id,path (a relative path is relative to the
manifest's folder; speakers are enrolled in the order they first appear).

The run is resumable: a speaker the service already has ENROLLED is skipped (--overwrite
re-enrolls it), and so is one that OPTED_OUT. Every other speaker's voiceprint is rebuilt
from SOURCE alone: its first accepted upload replaces any earlier one, so a rerun after an
interrupted run never counts a recording twice. A rejected file (bad audio, too little
speech, too large) is reported and the speaker's other files are still sent.

Progress goes to stderr (a bar on a terminal, one line per speaker otherwise), the summary
table to stdout. Exit status: 0 when every speaker is enrolled or skipped, 1 when any
failed, 2 for usage errors (no such source, bad manifest, service unreachable)."""

SIMULATE_DESCRIPTION = """\
Stream audio files to the service as an Azure Communication Services call would: one
AudioMetadata message, then 20 ms AudioData frames per participant, on one WebSocket.

    # unmixed: one participant per file, their frames interleaved on one socket
    biometrics simulate-call --participant 8:acs:caller=caller.wav \\
        --participant 8:acs:agent=agent.flac

    # mixed: the files summed into one stream, at 24 kHz, paced like a real call
    biometrics simulate-call --mixed call.wav --sample-rate 24000 --realtime

    # claim who the caller says they are, and print the service's events as they come
    biometrics simulate-call --call-id demo-1 --events \\
        --participant 4:+15551234567=caller.wav --claim 4:+15551234567=alice

Claims go to PUT /v1/calls/{call_id}/participants/{raw_id}/claim once the metadata is
sent, before any audio. Exit status: 0 when every frame was sent and the socket closed
normally; 1 when the connection failed or the server closed it (its code and reason are
printed); 2 for usage errors (bad arguments, unreadable audio)."""


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in CLIENT_COMMANDS:
            return CLIENT_COMMANDS[args.command](args)
        settings = Settings.from_env()
        if args.command == "cluster":  # the replicas log to their own files
            return _cluster(settings, args)
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        if args.command == "cohort":
            return _build_cohort(settings, args)
        if args.command == "calibrate":
            return _calibrate(settings, args)
        if args.command == "keys":
            return _keys(settings, args)
        if args.command == "expire":
            return _expire(settings, args.dry_run)
        return _db_upgrade(settings)
    except BiometricsError as error:
        print(f"biometrics: error: {error.detail}", file=sys.stderr)
        return 2
    except (UsageError, bulk_enrollment.UsageError, simulator.UsageError) as error:
        print(f"biometrics {args.command}: error: {error}", file=sys.stderr)
        return 2


# --- Options -------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; an option's help ends with its default, unless the help
    already says what it is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, argparse.SUPPRESS)
        if action.option_strings and shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biometrics",
        description="Voice biometric authentication for contact centers: run the service and "
        "manage its database\nand scoring, or enroll, verify and simulate calls against a "
        "running service.",
        epilog="Exit status: 0 success, 1 done but failed, 2 usage or start-up error.",
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"biometrics {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description or summary, formatter_class=_Formatter
        )

    serve = command(
        "serve",
        "run the HTTP service",
        "Run the HTTP service: the REST API and the ACS WebSocket /ws/acs. Its settings come\n"
        "from BIOMETRICS_* environment variables (see the README).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")

    cluster = command(
        "cluster",
        "run replicas behind HAProxy, with Redis, on this machine",
        "Start the replica topology from local processes, on loopback: redis-server, N\n"
        "`biometrics serve` replicas sharing BIOMETRICS_DATABASE_URL (PostgreSQL for more\n"
        "than one) and that Redis, and HAProxy in front. Every other BIOMETRICS_* variable\n"
        "reaches each replica. Prints the URLs and a new admin and stream key; Ctrl-C stops\n"
        "them all. Needs Debian's redis-server and haproxy packages.",
    )
    cluster.add_argument("--replicas", type=_positive_int, default=3, help="replicas to start")
    cluster.add_argument("--port", type=int, default=8000, help="the balancer's port")
    cluster.add_argument(
        "--folder", type=Path, help="logs and configuration (default: a temporary folder)"
    )

    db = command("db", "manage the database schema")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply pending migrations")

    cohort = command("cohort", "build the AS-norm impostor cohort of the configured model")
    cohort.add_argument("data", type=Path, help="speech folder (LibriSpeech names or subfolders)")
    cohort.add_argument("--per-speaker", type=int, default=3, help="utterances per speaker")
    cohort.add_argument("--top-n", type=int, default=200, help="cohort scores averaged (top N)")
    cohort.add_argument(
        "--exclude", nargs="*", default=[], help="speaker ids to leave out (default: none)"
    )

    calibrate = command(
        "calibrate", "fit the configured model's score calibration on development speech"
    )
    calibrate.add_argument(
        "data", type=Path, help="development speech, other speakers than the cohort"
    )
    calibrate.add_argument(
        "--enroll-seconds", type=float, default=20.0, help="net speech of each enrollment"
    )
    calibrate.add_argument(
        "--test-seconds", type=float, nargs="+", default=[3.0, 5.0], help="test lengths"
    )
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the trial selection")
    calibrate.add_argument(
        "--raw", action="store_true", help="calibrate raw cosine scores, ignoring the cohort"
    )

    keys = command(
        "keys",
        "make, list and revoke API keys; rotate the voiceprints' encryption key",
        "Make, list and revoke the API keys that every /v1 route and the live-call socket\n"
        "require. A key is shown once, when it is made; only a salted hash is stored.\n"
        "Roles: admin (everything), enroll, verify, read, stream (the ACS socket only).\n"
        "rotate-voiceprints re-encrypts the stored voiceprints under the current\n"
        "encryption key (BIOMETRICS_ENCRYPTION_KEY).",
    )
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="make a key; its text is the last line printed", formatter_class=_Formatter
    )
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.add_argument("--name", help="who or what the key is for (default: none)")
    create.add_argument(
        "--expires-in",
        type=_positive_float,
        metavar="DAYS",
        help="days until the key stops working (default: never)",
    )
    actions.add_parser("list", help="list keys, never their secrets", formatter_class=_Formatter)
    revoke = actions.add_parser("revoke", help="revoke a key at once", formatter_class=_Formatter)
    revoke.add_argument("key_id", help="the key id, as `keys list` shows it")
    rotate = actions.add_parser(
        "rotate-voiceprints",
        help="re-encrypt every voiceprint and cohort under the current encryption key",
        description=ROTATE_DESCRIPTION,
        formatter_class=_Formatter,
    )
    rotate.add_argument(
        "--batch-size", type=_positive_int, default=200, help="rows per transaction"
    )

    expire = command(
        "expire",
        "expire unused speakers and delete the history past its retention",
        EXPIRE_DESCRIPTION,
    )
    expire.add_argument(
        "--dry-run",
        action="store_true",
        help="count what would be expired and deleted, change nothing",
    )

    enroll = command(
        "enroll", "bulk-enroll recordings through a running service", ENROLL_DESCRIPTION
    )
    enroll.add_argument(
        "source",
        type=Path,
        help="a folder with one subfolder of recordings per speaker, or a speaker_id,path CSV",
    )
    _add_service_arguments(enroll)
    enroll.add_argument(
        "--overwrite",
        action="store_true",
        help="re-enroll speakers that are already enrolled, replacing their voiceprint",
    )
    enroll.add_argument("--quiet", action="store_true", help="no progress on stderr")

    verify = command(
        "verify",
        "verify a recording against an enrolled speaker",
        "Verify a recording (WAV, FLAC or Ogg) against a speaker's voiceprint and print the\n"
        "verdict. Exit status: 0 for ACCEPT, 1 for any other decision, 2 for errors.",
    )
    verify.add_argument("speaker_id", help="the speaker the voice claims to be")
    verify.add_argument("audio", type=Path, help="the recording")
    verify.add_argument(
        "--threshold", type=_score, help="decision threshold, 0 to 100 (default: the service's)"
    )
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    _add_service_arguments(verify)

    simulate = command(
        "simulate-call", "stream audio files to the service as an ACS call", SIMULATE_DESCRIPTION
    )
    _add_simulate_arguments(simulate)
    return parser


def _add_service_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help="the service's base URL")
    parser.add_argument(
        "--api-key",
        help=f"API key, sent as a bearer token (default: ${API_KEY_VARIABLE}, if set)",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=3,
        metavar="N",
        help="retries after a connection error, a timeout or HTTP 429/502/503/504",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for each answer",
    )


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=simulator.DEFAULT_URL, help="the service's WebSocket")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--participant",
        action="append",
        default=[],
        type=_pair("RAW_ID=PATH"),
        metavar="RAW_ID=PATH",
        help="unmixed: one participant's audio file (repeatable; default: none)",
    )
    source.add_argument(
        "--mixed",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="mixed: files summed into one stream naming no participant (repeatable; "
        "default: none)",
    )
    parser.add_argument(
        "--call-id", help="sent as x-ms-call-connection-id (default: a random UUID)"
    )
    parser.add_argument(
        "--call-id-in-query", action="store_true", help="also send the call id as ?call_id="
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header,
        metavar="NAME:VALUE",
        help="an extra header on the WebSocket request, e.g. Authorization (repeatable; "
        "default: none)",
    )
    parser.add_argument(
        "--sample-rate", type=int, choices=simulator.SAMPLE_RATES, default=16_000, help="call rate"
    )
    parser.add_argument("--realtime", action="store_true", help="pace frames at 20 ms")
    parser.add_argument(
        "--claim",
        action="append",
        default=[],
        type=_pair("RAW_ID=SPEAKER_ID"),
        metavar="RAW_ID=SPEAKER_ID",
        help="claim a participant's identity before the audio (repeatable; default: none)",
    )
    parser.add_argument(
        "--events", action="store_true", help="print the call's events until it ends"
    )
    parser.add_argument(
        "--api-url",
        metavar="URL",
        help="the REST API for claims and events (default: the WebSocket's host over http)",
    )
    parser.add_argument(
        "--api-key",
        help=f"API key for claims and events (default: ${API_KEY_VARIABLE}, if set)",
    )
    parser.add_argument(
        "--linger",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="keep the socket open this long after the last frame",
    )


def _version() -> str:
    try:
        return importlib.metadata.version("biometrics")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(not installed)"


def _pair(shape: str) -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key or not value:
            raise argparse.ArgumentTypeError(f"expected {shape}, got {text!r}")
        return key, value

    return parse


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _non_negative_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _score(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be from 0 to 100")
    return value


# --- The service: serve, db, cohort, calibrate -------------------------------------------------


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
            _first_admin_key(KeyStore(database), host, port, AuditLog(database))
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


def _first_admin_key(keys: KeyStore, host: str, port: int, audit: AuditLog) -> None:
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
    if args.action == "rotate-voiceprints":
        return _rotate_voiceprints(settings, args.batch_size)
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
    rows = [
        [
            info.key_id,
            info.role.value,
            info.name or "",
            isoformat(info.created_at) or "",
            isoformat(info.expires_at) or "never",
            "revoked" if info.revoked_at else ("usable" if info.usable(utcnow()) else "expired"),
            isoformat(info.last_used_at) or "never",
        ]
        for info in keys.list()
    ]
    header = ["KEY ID", "ROLE", "NAME", "CREATED", "EXPIRES", "STATE", "LAST USED"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
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
    return 0


def _expire(settings: Settings, dry_run: bool) -> int:
    report = lifecycle.sweep(
        _open_database(settings),
        lifecycle.SpeakerExpiry(settings.speaker_expiry_days),
        lifecycle.Retention(settings.verdict_retention_days, settings.audit_retention_days),
        origin=COMMAND_LINE,
        dry_run=dry_run,
    )
    done = "would be " if dry_run else ""
    print(
        f"{_counted(report.speakers_expired, 'speaker')} {done}expired (voiceprints deleted), "
        f"{_counted(report.verdicts_deleted, 'verdict')} and "
        f"{_counted(report.audit_rows_deleted, 'audit row')} past retention {done}deleted"
        + ("; nothing was changed (--dry-run)" if dry_run else "")
    )
    return 0


def _counted(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _cluster(settings: Settings, args: argparse.Namespace) -> int:
    import tempfile

    from biometrics import topology

    with contextlib.ExitStack() as stack:
        folder = args.folder or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        topology.run_until_stopped(
            folder,
            settings.database_url,
            args.replicas,
            settings.model_source,
            args.port,
            {"BIOMETRICS_MODEL_CACHE_DIR": str(settings.model_cache_dir)},
            lambda line: print(line, flush=True),
        )
    return 0


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


# --- A running service: the client's settings ---------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    try:
        return Client(
            args.url,
            api_key=_api_key(args),
            timeout=args.timeout,
            retry=RetryPolicy(retries=args.retries),
        )
    except ValueError as error:
        raise UsageError(f"--url: {error}") from None


def _api_key(args: argparse.Namespace) -> str | None:
    return args.api_key or os.environ.get(API_KEY_VARIABLE)


# --- enroll -------------------------------------------------------------------------------------


def _enroll(args: argparse.Namespace) -> int:
    speakers = bulk_enrollment.load_source(args.source)  # a bad source fails offline
    with _client(args) as api:
        outcomes = bulk_enrollment.run(
            api,
            speakers,
            overwrite=args.overwrite,
            progress=sys.stderr,
            quiet=args.quiet,
            out=sys.stdout,
        )
    return 1 if any(outcome.failed for outcome in outcomes) else 0


# --- verify -------------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    if not args.audio.is_file():
        raise UsageError(f"{args.audio} is not a file")
    with _client(args) as api:
        try:
            verdict = api.verify(args.audio, args.speaker_id, threshold=args.threshold)
        except ClientError as error:
            raise UsageError(str(error)) from None
    if args.json:
        print(json.dumps(dataclasses.asdict(verdict), default=str, indent=2))
    else:
        print(verdict.describe())
    return 0 if verdict.accepted else 1


# --- simulate-call ------------------------------------------------------------------------------


def _simulate_call(args: argparse.Namespace) -> int:
    options = simulator.Options(
        url=args.url,
        participants=[(raw_id, Path(path)) for raw_id, path in args.participant],
        mixed=args.mixed,
        call_id=args.call_id,
        call_id_in_query=args.call_id_in_query,
        headers=dict(args.header),
        sample_rate=args.sample_rate,
        realtime=args.realtime,
        claims=args.claim,
        events=args.events,
        api_url=args.api_url,
        api_key=_api_key(args),
        linger=args.linger,
    )
    try:
        simulator.simulate(options, sys.stdout)
    except simulator.CallFailed as error:
        print(f"biometrics simulate-call: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


CLIENT_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "enroll": _enroll,
    "verify": _verify,
    "simulate-call": _simulate_call,
}
