"""Fuzz the service's input handling for as long as you like: the hostile-input properties
of the test suite (tests/hostile/properties.py: the ACS parser, audio decoding, JSON and
multipart bodies), each run with fresh seeds until its share of the time is spent.

    python scripts/fuzz.py --minutes 30 [--target parser|audio|json|multipart|all] [--seed N]

Each property gets an equal share of the time, in rounds of fresh seeds (a round's
examples sized from the rate so far). The request targets run against the application in
process (the small random-weight model, a SQLite database in a temporary folder), as
their tests do. Prints a table (target, property, cases, failures, seconds), writes it as
JSON to ``--out``, and exits 1 on any failure, printing its falsifying example (shrunk by
Hypothesis) and the round's seed; a property stops at its first failure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import inspect
import json
import logging
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The properties live with the tests that run them in CI (Hypothesis is a test dependency,
# not one of the service): run from a checkout, with the repository root importable.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from biometrics.app import create_app  # noqa: E402
from biometrics.embedding import load_encoder  # noqa: E402
from biometrics.evaluation.report import format_table  # noqa: E402
from tests.conftest import (  # noqa: E402
    admin_key_for,
    bearer,
    hide_lazy_modules,
    migrated_sqlite,
    settings_for,
    write_small_model,
)
from tests.hostile.properties import PROPERTIES, TARGETS, Property  # noqa: E402

COLUMNS = [("target", "<"), ("property", "<"), ("cases", ">"), ("failures", ">"), ("seconds", ">")]
FIRST_ROUND = 50  # examples, before the rate is known
ROUND_SECONDS = 20.0  # later rounds are sized to about this long


@dataclasses.dataclass
class Outcome:
    target: str
    property: str
    cases: int = 0
    failures: int = 0
    seconds: float = 0.0
    failure: dict[str, Any] | None = None  # the error, the falsifying example, its seed


def fuzz(prop: Property, seconds: float, rounds: random.Random, client: Any = None) -> Outcome:
    """Run ``prop`` for about ``seconds``, a fresh seed from ``rounds`` each round."""
    outcome = Outcome(prop.target, prop.name)
    check = prop.check if client is None else functools.partial(prop.check, client)

    def counted(*args: Any, **kwargs: Any) -> None:
        outcome.cases += 1
        check(*args, **kwargs)

    # given() maps its strategies onto the test's parameters: show it the check's own.
    counted.__signature__ = inspect.signature(check)  # type: ignore[attr-defined]
    started = time.monotonic()
    examples = FIRST_ROUND
    while (elapsed := time.monotonic() - started) < seconds:
        round_seed = rounds.getrandbits(32)
        test = seed(round_seed)(
            settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            )(given(*prop.arguments)(counted))
        )
        hide_lazy_modules()
        cases_before = outcome.cases
        try:
            test()
        except Exception as error:
            outcome.failures = 1
            outcome.failure = {
                "seed": round_seed,
                "max_examples": examples,
                "error": "".join(traceback.format_exception_only(error)).strip(),
                "example": "\n".join(getattr(error, "__notes__", [])),
            }
            break
        round_seconds = time.monotonic() - started - elapsed
        rate = (outcome.cases - cases_before) / max(round_seconds, 1e-3)
        left = seconds - (time.monotonic() - started)
        examples = max(10, int(rate * min(left, ROUND_SECONDS)))
    outcome.seconds = time.monotonic() - started
    return outcome


@contextlib.contextmanager
def application_client() -> Iterator[TestClient]:
    """The application in process, as the request tests have it: the small random-weight
    model, a fresh SQLite database, an admin key, and no rate limit (the generated requests
    come by the thousand from one key)."""
    with tempfile.TemporaryDirectory(prefix="biometrics-fuzz-") as name:
        folder = Path(name)
        model = write_small_model(folder / "model")
        encoder = load_encoder(str(model), folder / "cache", threads=2)
        url = migrated_sqlite(folder)
        app_settings = dataclasses.replace(
            settings_for(url, model, folder), rate_limit_per_minute=0
        )
        app = create_app(app_settings, encoder=encoder)
        with TestClient(app, headers=bearer(admin_key_for(url))) as client:
            yield client


def run(
    selected: list[Property], minutes: float, master_seed: int, log: Callable[[str], None]
) -> list[Outcome]:
    rounds = random.Random(master_seed)
    share = minutes * 60.0 / len(selected)
    outcomes = []
    with contextlib.ExitStack() as stack:
        client = None
        if any(prop.needs_client for prop in selected):
            client = stack.enter_context(application_client())
        for prop in selected:
            log(f"{prop.target}: {prop.name} for {share:.0f} s")
            outcomes.append(fuzz(prop, share, rounds, client if prop.needs_client else None))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    rows = [
        (o.target, o.property, str(o.cases), str(o.failures), f"{o.seconds:.1f}") for o in outcomes
    ]
    rows.append(
        (
            "all",
            "",
            str(sum(o.cases for o in outcomes)),
            str(sum(o.failures for o in outcomes)),
            f"{sum(o.seconds for o in outcomes):.1f}",
        )
    )
    return format_table(rows, COLUMNS, rule=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total time (default 10)")
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--out", type=Path, default=Path("results/fuzz.json"))
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Every refused case logs a warning; a 5xx still logs its error.
    logging.getLogger("biometrics").setLevel(logging.ERROR)
    master_seed = random.SystemRandom().getrandbits(32) if args.seed is None else args.seed
    selected = [p for p in PROPERTIES if args.target in ("all", p.target)]
    print(f"fuzzing {args.target} for {args.minutes:g} min, --seed {master_seed}", file=sys.stderr)
    outcomes = run(selected, args.minutes, master_seed, lambda line: print(line, file=sys.stderr))
    print(table(outcomes))
    failed = [o for o in outcomes if o.failure is not None]
    for outcome in failed:
        assert outcome.failure is not None
        print(
            f"\nFAILED {outcome.target}: {outcome.property} (round seed {outcome.failure['seed']})"
        )
        print(outcome.failure["error"])
        print(outcome.failure["example"])
    results = {
        "command": " ".join(
            ["python", "scripts/fuzz.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "seed": master_seed,
        "minutes": args.minutes,
        "cases": sum(o.cases for o in outcomes),
        "failures": sum(o.failures for o in outcomes),
        "properties": [dataclasses.asdict(o) for o in outcomes],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results in {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
