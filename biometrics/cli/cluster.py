"""``biometrics cluster``: the replica topology from local processes on loopback
(thin over :mod:`biometrics.topology`)."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from biometrics.cli.options import Commands, add_command, positive_int
from biometrics.config import Settings

DESCRIPTION = """\
Start the replica topology from local processes, on loopback: redis-server, N
`biometrics serve` replicas sharing BIOMETRICS_DATABASE_URL (PostgreSQL for more than one)
and that Redis, and HAProxy in front. Every other BIOMETRICS_* variable reaches each
replica. Prints the URLs and a new admin and stream key; Ctrl-C stops them all. Needs
Debian's redis-server and haproxy packages."""

EXAMPLES = """\
example:
  BIOMETRICS_DATABASE_URL=postgresql+psycopg://user:pass@127.0.0.1/biometrics \\
      biometrics cluster --replicas 3 --port 8000"""


def register(commands: Commands) -> None:
    parser = add_command(
        commands,
        "cluster",
        "run replicas behind HAProxy, with Redis, on this machine",
        _cluster,
        description=DESCRIPTION,
        epilog=EXAMPLES,
    )
    parser.add_argument("--replicas", type=positive_int, default=3, help="replicas to start")
    parser.add_argument("--port", type=int, default=8000, help="the balancer's port")
    parser.add_argument(
        "--folder", type=Path, help="logs and configuration (default: a temporary folder)"
    )


def _cluster(args: argparse.Namespace) -> int:
    from biometrics import topology

    settings = Settings.from_env()  # no logging set up here: the replicas log to their files
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
