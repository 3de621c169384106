"""Fault soak: N live calls at a time for M minutes against `biometrics serve` on loopback,
with abrupt disconnects, malformed frames, the database cut off and the webhook receiver
down; reports where every frame, verdict and event went (biometrics.soak does the work).

    .venv/bin/python scripts/soak.py --calls 20 --minutes 10 --out results/soak.json
    .venv/bin/python scripts/soak.py --calls 4 --minutes 2 \\
        --postgres-url postgresql+psycopg://user:pass@127.0.0.1:5432/postgres

Exit status: 0 nothing lost and no error; 1 something lost or an error; 2 it could not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from biometrics.soak import FAULT_KINDS, SoakError, SoakOptions, run

DEFAULT_SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "librispeech"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="calls at once, in each wave")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep going")
    parser.add_argument("--speed", type=float, default=1.0, help="times real time (1: paced)")
    parser.add_argument("--speakers", type=int, default=5, help="speakers enrolled (K)")
    parser.add_argument("--call-seconds", type=float, default=16.0, help="audio per participant")
    parser.add_argument(
        "--librispeech",
        type=Path,
        default=DEFAULT_SPEECH,
        help="LibriSpeech excerpts (test-other-dev is used) or a folder of speaker folders",
    )
    parser.add_argument("--model", default="bundled", help="BIOMETRICS_MODEL_SOURCE")
    parser.add_argument(
        "--postgres-url", help="a PostgreSQL server (role with CREATEDB); default: SQLite"
    )
    parser.add_argument(
        "--pg-restart-command",
        help="restart PostgreSQL for the database fault, e.g. 'pg_ctlcluster 15 main restart' "
        "(default: cut a TCP proxy in front of it)",
    )
    for kind in FAULT_KINDS:
        parser.add_argument(f"--no-{kind}", action="store_true", help=f"no {kind} faults")
    parser.add_argument("--database-outage-seconds", type=float, default=5.0)
    parser.add_argument("--webhook-outage-seconds", type=float, default=8.0)
    parser.add_argument("--workdir", type=Path, help="keep the service's folder here")
    parser.add_argument("--out", type=Path, help="write the report as JSON here too")
    args = parser.parse_args()
    if not args.librispeech.is_dir():
        print(f"soak skipped: no speech at {args.librispeech} (--librispeech)", file=sys.stderr)
        return 2
    options = SoakOptions(
        speech=args.librispeech,
        calls=args.calls,
        minutes=args.minutes,
        speed=args.speed,
        speakers=args.speakers,
        call_seconds=args.call_seconds,
        model=args.model,
        postgres_url=args.postgres_url,
        pg_restart_command=args.pg_restart_command,
        faults=frozenset(k for k in FAULT_KINDS if not getattr(args, f"no_{k}")),
        database_outage_seconds=args.database_outage_seconds,
        webhook_outage_seconds=args.webhook_outage_seconds,
        workdir=args.workdir,
    )
    try:
        report = run(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except SoakError as error:
        print(f"soak: {error}", file=sys.stderr)
        return 2
    print(report.table())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.as_json() + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
