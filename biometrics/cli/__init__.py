"""The ``biometrics`` command.

Run and manage the service on its machine (``serve``, ``db``, ``keys``, ``expire``,
``cohort``, ``calibrate``: :mod:`biometrics.cli.service`), or talk to a running service
through its REST API (``speakers``, ``enroll``, ``verify``, ``simulate-call``: one module
each, over :mod:`biometrics.client`). Every failure is one line on stderr, and the exit
status says what kind it was (:class:`biometrics.cli.exits.Exit`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

from biometrics import bulk_enrollment, simulator
from biometrics.cli import cluster, enroll, service, simulate, speakers, verify
from biometrics.cli.exits import EPILOG, CommandError, Exit, client_failure
from biometrics.cli.options import Formatter
from biometrics.client import ClientError
from biometrics.config import ClientSettings
from biometrics.errors import BiometricsError

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Voice biometric authentication for contact centers: run the service and manage its
database and scoring, or enroll, verify, list and delete speakers and simulate calls
against a running service."""

EXAMPLES = """\
examples:
  biometrics serve                                   # the service, on 127.0.0.1:8000
  export BIOMETRICS_API_KEY=bmk_...                  # the key the client commands send
  biometrics enroll --speaker cust-42 call1.wav call2.wav
  biometrics verify cust-42 call3.wav
  biometrics speakers list

"""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = " ".join(part for part in (args.command, getattr(args, "action", None)) if part)
    try:
        return int(args.run(args))
    except CommandError as error:
        return _fail(name, str(error), error.status)
    except ClientError as error:
        failure = client_failure(error, _service_url(args))
        return _fail(name, str(failure), failure.status)
    except BiometricsError as error:
        return _fail("", error.detail, Exit.NOT_FOUND if error.status_code == 404 else Exit.USAGE)
    except (bulk_enrollment.UsageError, simulator.UsageError) as error:
        return _fail(name, str(error), Exit.USAGE)
    except KeyboardInterrupt:
        return _fail(name, "interrupted", Exit.INTERRUPTED)


def _fail(name: str, message: str, status: Exit) -> int:
    print(f"biometrics{' ' + name if name else ''}: error: {message}", file=sys.stderr)
    return int(status)


def _service_url(args: argparse.Namespace) -> str:
    try:
        return ClientSettings.from_env(url=getattr(args, "url", None)).url
    except BiometricsError:
        return str(getattr(args, "url", ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biometrics",
        description=DESCRIPTION,
        epilog=EXAMPLES + EPILOG,
        formatter_class=Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"biometrics {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )
    service.register(commands)
    speakers.register(commands)
    enroll.register(commands)
    verify.register(commands)
    simulate.register(commands)
    cluster.register(commands)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("biometrics")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(not installed)"
