"""Benchmark: live-call capacity. Two-participant ACS calls over loopback against
``biometrics serve`` (a subprocess), as a burst of N calls at once or as a Poisson stream of
calls; how long each verdict takes from its speech's last frame to its event.

    python -m benchmarks.live_calls --model bundled --calls 8 --out results/live_calls.json
    python -m benchmarks.live_calls --model random:1024 --search --out results/search.json
    python -m benchmarks.live_calls --model bundled --poisson 600 --call-seconds 180 \\
        --duration 900 --out results/poisson.json
    python -m benchmarks.live_calls --model bundled --poisson 600 --search ...

Each call is unmixed: the caller (claimed over REST, before the audio, as the LibriSpeech
reader whose voice it is, enrolled first from other utterances of that reader) and the agent
(unclaimed), both paced at real time in 20 ms frames by the soak's call player. A burst
starts its calls spread over ``--ramp-seconds`` (2 s); a Poisson run starts them at random
(exponential gaps, ``--seed``) for ``--duration`` seconds, each ``--call-seconds`` long.

A verdict's latency runs from the moment the frame that completed its speech went out (the
verdict's ``last_audio_at`` is that frame's timestamp plus 20 ms; the player notes when it
sent each frame) to the moment its ``verdict.changed`` event arrived over the call's
server-sent events. SSE rather than the webhook: the service writes the event to the open
stream as it publishes the verdict, while a webhook is a fresh POST from a small pool that
keeps four in flight per URL, so in a burst it would time that queue and the receiver. The
events are read by one blocked thread per call, which costs the client almost nothing.

Reported, per run: p50/p95/p99 of the first verdict of each call and of every scheduled
verdict, verdicts expected (the schedule's points, 3, 5, 7, 9 and 10 s by default, that the
caller's net speech reached, as the service counted it) against those received (a point
without a verdict of its own was merged into a later verdict that started late, or lost:
*lost* counts the calls whose speech never got its last verdict), decisions
(the callers are genuine: ACCEPTs are the sanity check), verdicts that started late (on
more speech than their point: each waited for the participant's previous verdict, and its
latency counts from the later frame it started on, so it understates), how late frames
went out against
their schedule (the client shares the CPUs with the service: a slow client shows here), the
service's CPU (per cent of one core, from ``/proc``) and resident memory (at the start, at
the peak, and the growth per call at once), and this process's CPU. A run passes when the
first verdicts' p95 is at most ``--max-p95-ms`` (300) and no call's last verdict is lost.
``--search`` doubles N (or the rate) from ``--calls`` (or ``--poisson``) until a run fails,
then bisects to within 10 %; one service serves every step. A Poisson search takes long
(each step is ``--duration`` plus a call); ``--call-seconds 30`` gives a quicker look.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks.common import DEFAULT_SPEECH, machine, print_table, write_json
from benchmarks.model_vs_service import model_folder
from biometrics.audio.framing import FRAME_SECONDS
from biometrics.config import Settings
from biometrics.soak.calls import CALLER, CallPlan, CallRun
from biometrics.soak.meter import ProcessMeter
from biometrics.soak.options import SoakError
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.report import CallResult, Tally
from biometrics.soak.runner import enroll
from biometrics.soak.service import HARNESS_SETTINGS, Endpoint, fresh_postgres, start_service
from biometrics.soak.speech import Voice, load_voices, speech_folder
from biometrics.streaming.schedule import DecisionSchedule
from biometrics.topology import ClusterError
from biometrics.topology import running as topology_running

SCHEDULE_VARIABLES = (
    "BIOMETRICS_MIN_VERIFY_SPEECH_SECONDS",
    "BIOMETRICS_STREAM_STEP_SECONDS",
    "BIOMETRICS_STREAM_MAX_SPEECH_SECONDS",
)
BURST_CALL_SECONDS = 16.0  # a reader's net speech passes the 10 s final verdict in it
POISSON_CALL_SECONDS = 180.0
MAX_SEARCH_CALLS = 1280
MAX_SEARCH_RATE = 100_000  # calls a hour
STREAM_MAX_CALLS = 100_000


@dataclasses.dataclass(frozen=True)
class Bench:
    """The running service (one process, or replicas behind the balancer) and what every run
    plays into it."""

    service: Endpoint
    pids: tuple[int, ...]  # the service's processes: one, or each replica
    voices: Sequence[Voice]
    schedule: DecisionSchedule
    max_p95_ms: float
    replicas: int | None = None  # behind HAProxy, with Redis; None: one process alone
    redis_url: str | None = None


@dataclasses.dataclass(frozen=True)
class Played:
    """What one run's calls made, and what the service and this client spent on them."""

    results: list[CallResult]
    cpu_percent: float  # the service's, over the calls' audio
    start_rss_mib: float
    peak_rss_mib: float
    client_cpu_percent: float
    peak_calls: int  # at once
    errors: list[str]
    redis_commands: int | None  # the Redis server's, over the run (None: no Redis)


def schedule_of(settings: dict[str, str]) -> DecisionSchedule:
    """The decision schedule the service runs with: this environment, these settings on top
    (as ``start_service`` passes them), defaults for the rest."""
    s = Settings.from_env({**os.environ, **settings})
    return DecisionSchedule.of_seconds(
        s.min_verify_speech_seconds, s.stream_step_seconds, s.stream_max_speech_seconds
    )


def points(schedule: DecisionSchedule) -> list[int]:
    """The speech, in frames, at which the schedule's verdicts fall due."""
    found: list[int] = []
    due = schedule.next_due(0)
    while due is not None:
        found.append(due)
        due = schedule.next_due(due)
    return found


def expected_verdicts(schedule: DecisionSchedule, speech_seconds: float) -> int:
    """Verdicts the schedule owes a participant with this much net speech: each point it
    reached, and one on the speech left over when the call ended short of the maximum."""
    heard = round(speech_seconds / FRAME_SECONDS)
    reached = [point for point in points(schedule) if point <= heard]
    left_over = bool(reached) and not schedule.is_final(heard) and reached[-1] < heard
    return len(reached) + left_over


def point_of(schedule: DecisionSchedule, speech_seconds: float) -> float:
    """The schedule's point (in seconds) a verdict on this much speech was due at: the last
    one not above it. More speech than that means the verdict started late, behind the
    participant's previous one, on the speech heard by then."""
    heard = round(speech_seconds / FRAME_SECONDS)
    reached = [point for point in points(schedule) if point <= heard]
    return (reached[-1] if reached else heard) * FRAME_SECONDS


def scheduled(result: CallResult) -> list[tuple[float, float, str]]:
    """The caller's verdicts on speech, in arrival order: (latency s, speech s, decision)."""
    if result.audio_start is None:
        return []
    found = []
    for arrived, verdict in sorted(result.verdict_arrivals, key=lambda pair: pair[0]):
        last_audio_at = verdict.get("last_audio_at")
        if verdict.get("participant_raw_id") != CALLER or not isinstance(last_audio_at, str):
            continue
        offset = datetime.fromisoformat(last_audio_at) - result.audio_start
        frame = round(offset.total_seconds() / FRAME_SECONDS) - 1
        if 0 <= frame < len(result.caller_sent_at):
            latency = arrived - result.caller_sent_at[frame]
            speech = float(verdict.get("speech_seconds") or 0.0)
            found.append((latency, speech, str(verdict.get("decision"))))
    return found


def quantiles_ms(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ms = np.asarray(values) * 1000.0
    p50, p95, p99 = (float(q) for q in np.percentile(ms, [50, 95, 99]))
    return {"p50": p50, "p95": p95, "p99": p99, "max": float(ms.max())}


def by_point(
    schedule: DecisionSchedule, verdicts: Sequence[tuple[float, float, str]]
) -> dict[str, float | None]:
    """The median latency at each point of the schedule: does a longer window cost more?"""
    groups: dict[float, list[float]] = collections.defaultdict(list)
    for latency, speech, _ in verdicts:
        groups[point_of(schedule, speech)].append(latency)
    return {f"{point:g}": quantiles_ms(groups[point])["p50"] for point in sorted(groups)}


def last_lost(
    schedule: DecisionSchedule, speech_seconds: float, verdicts: Sequence[tuple[float, float, str]]
) -> bool:
    """Whether no verdict came on all the speech the caller was owed one on (up to the final
    point): a verdict lost. A schedule point with no verdict of its own, while a later verdict
    judged its speech, was merged into that one (it started late), not lost."""
    owed = min(round(speech_seconds / FRAME_SECONDS), schedule.max_frames)
    if not schedule.enough(owed):
        return False
    judged = max((round(speech / FRAME_SECONDS) for _, speech, _ in verdicts), default=0)
    return judged < owed - 1  # a frame's rounding either way


def started_late(schedule: DecisionSchedule, verdicts: Sequence[tuple[float, float, str]]) -> int:
    """Verdicts on more speech than their point (by over a frame): each waited for the one
    before it, and its latency counts from a later frame than the one that made it due."""
    return sum(
        speech - point_of(schedule, speech) > 1.5 * FRAME_SECONDS for _, speech, _ in verdicts
    )


def call_plan(voices: Sequence[Voice], number: int) -> CallPlan:
    """A genuine caller, claimed as themselves; the agent another reader."""
    caller = voices[number % len(voices)]
    agent = voices[(number + 1) % len(voices)]
    return CallPlan(f"bench-{number:05d}-{uuid.uuid4().hex[:8]}", caller, caller, agent, None)


async def play(bench: Bench, starts: Sequence[float]) -> Played:
    """One call per start (seconds from now), the service metered while their audio plays."""
    tally = Tally()
    at_once = collections.Counter[str]()

    async def call(number: int, delay: float) -> asyncio.Future[CallResult]:
        await asyncio.sleep(delay)
        # Made when due, and let go once read back: a long Poisson run holds only its
        # ongoing calls' clients.
        run = CallRun(call_plan(bench.voices, number), bench.service, 1.0, tally)
        at_once["now"] += 1
        at_once["peak"] = max(at_once["peak"], at_once["now"])
        await run.play()
        at_once["now"] -= 1
        return asyncio.ensure_future(asyncio.to_thread(run.read_back))

    meter = ProcessMeter(*bench.pids)
    meter.start()
    commands = redis_commands(bench.redis_url)
    client_cpu, began = time.process_time(), time.monotonic()
    read_backs = await asyncio.gather(*(call(i, delay) for i, delay in enumerate(starts)))
    client_percent = 100.0 * (time.process_time() - client_cpu) / (time.monotonic() - began)
    usage = meter.stop()
    results = list(await asyncio.gather(*read_backs))
    if commands is not None:
        commands = int(redis_commands(bench.redis_url) or 0) - commands
    return Played(
        results=results,
        cpu_percent=usage.cpu_percent,
        start_rss_mib=usage.start_rss_mib,
        peak_rss_mib=usage.peak_rss_mib,
        client_cpu_percent=client_percent,
        peak_calls=at_once["peak"],
        errors=list(tally.errors),
        redis_commands=commands,
    )


def redis_commands(url: str | None) -> int | None:
    """The commands the Redis server at ``url`` has processed so far (None without one)."""
    if url is None:
        return None
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def summary(bench: Bench, played: Played) -> dict[str, Any]:
    """The figures of one run."""
    results = played.results
    verdicts = [scheduled(result) for result in results]
    expected = [expected_verdicts(bench.schedule, r.caller_speech_seconds) for r in results]
    missing = sum(max(e - len(v), 0) for e, v in zip(expected, verdicts, strict=True))
    lost = sum(
        last_lost(bench.schedule, r.caller_speech_seconds, v)
        for r, v in zip(results, verdicts, strict=True)
    )
    every = [verdict for v in verdicts for verdict in v]
    first = quantiles_ms([v[0][0] for v in verdicts if v])
    starts = [r.audio_start for r in results if r.audio_start is not None]
    spread = (max(starts) - min(starts)).total_seconds() if starts else 0.0
    growth = played.peak_rss_mib - played.start_rss_mib
    received = sum(len(v) for v in verdicts)
    return {
        "replicas": bench.replicas,
        "calls": len(results),
        "peak_calls_at_once": played.peak_calls,
        "start_spread_seconds": spread,
        "first_verdict_ms": first,
        "all_verdicts_ms": quantiles_ms([latency for latency, _, _ in every]),
        "p50_ms_by_point_seconds": by_point(bench.schedule, every),
        "verdicts_started_late": started_late(bench.schedule, every),
        "verdicts_expected": sum(expected),
        "verdicts_received": received,
        "verdicts_missing": missing,  # points without a verdict of their own: merged or lost
        "last_verdicts_lost": lost,  # calls whose speech never got its last verdict
        "decisions": dict(collections.Counter(decision for _, _, decision in every)),
        "send_lag_ms": quantiles_ms([lag for r in results for lag in r.send_lag]),
        "server_cpu_percent": played.cpu_percent,
        "client_cpu_percent": played.client_cpu_percent,
        "start_rss_mib": played.start_rss_mib,
        "peak_rss_mib": played.peak_rss_mib,
        "rss_per_call_mib": growth / max(played.peak_calls, 1),
        # Every command of the run (leases, claims, events, webhook queue) over its verdicts.
        "redis_commands_per_verdict": (
            None if played.redis_commands is None else played.redis_commands / max(received, 1)
        ),
        "errors": len(played.errors),
        "error_samples": played.errors[:10],
        "pass": first["p95"] is not None and first["p95"] <= bench.max_p95_ms and lost == 0,
    }


def burst(bench: Bench, calls: int, ramp_seconds: float) -> dict[str, Any]:
    starts = [index * ramp_seconds / calls for index in range(calls)]
    return {"mode": "burst", **summary(bench, asyncio.run(play(bench, starts)))}


def poisson(bench: Bench, per_hour: float, duration: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    starts: list[float] = []
    moment = rng.expovariate(per_hour / 3600.0)
    while moment < duration:
        starts.append(moment)
        moment += rng.expovariate(per_hour / 3600.0)
    row = summary(bench, asyncio.run(play(bench, starts)))
    return {
        "mode": "poisson",
        "offered_calls_per_hour": per_hour,
        "calls_per_hour": len(starts) * 3600.0 / duration,
        **row,
    }


def search(measure: Callable[[int], dict[str, Any]], first: int, limit: int) -> int | None:
    """The largest value that passes: doubling from ``first`` until a run fails, then
    bisecting until the step is within 10 % (or 1)."""
    passed, failed, value = 0, None, first
    while value <= limit:
        if measure(value)["pass"]:
            passed, value = value, value * 2
        else:
            failed = value
            break
    while failed is not None and failed - passed > max(1, passed // 10):
        middle = (passed + failed) // 2
        if measure(middle)["pass"]:
            passed = middle
        else:
            failed = middle
    return passed or None


@contextlib.contextmanager
def running(
    args: argparse.Namespace, settings: dict[str, str], replicas: int | None = None
) -> Iterator[Bench]:
    """The service up with the readers enrolled: one process, or ``replicas`` behind
    HAProxy with Redis (``biometrics.topology``), the calls played through the balancer."""
    voices = load_voices(args.speech, args.speakers, args.call_seconds)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="biometrics-")))
        _, source = model_folder(args.model, folder)
        webhook = stack.enter_context(WebhookSink(secrets.token_hex(16)))
        database_url = (
            f"sqlite:///{folder / 'bench.db'}"
            if args.database_url is None
            else stack.enter_context(fresh_postgres(args.database_url))
        )
        schedule = schedule_of(settings)
        if replicas is None:
            service = start_service(folder, database_url, source, webhook, settings)
            stack.callback(service.stop)
            enroll(service, voices)
            yield Bench(service, (service.process.pid,), voices, schedule, args.max_p95_ms)
            return
        cluster = stack.enter_context(
            topology_running(
                folder, database_url, replicas, source, webhook, {**HARNESS_SETTINGS, **settings}
            )
        )
        enroll(cluster.balancer, voices)
        pids = tuple(replica.process.pid for replica in cluster.replicas)
        yield Bench(
            cluster.balancer, pids, voices, schedule, args.max_p95_ms, replicas, cluster.redis_url
        )


def table(rows: Sequence[dict[str, Any]]) -> None:
    def ms(value: float | None) -> object:
        return "-" if value is None else value

    print_table(
        [
            "mode",
            "calls",
            "at once",
            "first p50",
            "first p95",
            "first p99",
            "all p95",
            "missing",
            "lost",
            "late",
            "accepted",
            "lag p95",
            "server CPU %",
            "peak RSS MiB",
            "MiB/call",
            "Redis cmds/verdict",
            "pass",
        ],
        [
            [
                (
                    "burst"
                    if row["mode"] == "burst"
                    else f"poisson {row['offered_calls_per_hour']:g}/h"
                )
                + ("" if row.get("replicas") is None else f", replicas {row['replicas']}"),
                row["calls"],
                row["peak_calls_at_once"],
                ms(row["first_verdict_ms"]["p50"]),
                ms(row["first_verdict_ms"]["p95"]),
                ms(row["first_verdict_ms"]["p99"]),
                ms(row["all_verdicts_ms"]["p95"]),
                f"{row['verdicts_missing']}/{row['verdicts_expected']}",
                row["last_verdicts_lost"],
                row["verdicts_started_late"],
                f"{row['decisions'].get('ACCEPT', 0)}/{row['verdicts_received']}",
                ms(row["send_lag_ms"]["p95"]),
                row["server_cpu_percent"],
                row["peak_rss_mib"],
                row["rss_per_call_mib"],
                ms(row.get("redis_commands_per_verdict")),
                "yes" if row["pass"] else "no",
            ]
            for row in rows
        ],
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled", help="bundled, random:<channels> or PATH")
    parser.add_argument("--calls", type=int, default=5, help="burst size (first of --search)")
    parser.add_argument(
        "--poisson", type=float, metavar="PER_HOUR", help="calls a hour, as a Poisson stream"
    )
    parser.add_argument("--search", action="store_true", help="find the largest that passes")
    parser.add_argument("--call-seconds", type=float, help="16 for a burst, 180 for Poisson")
    parser.add_argument("--duration", type=float, default=600.0, help="Poisson arrivals, s")
    parser.add_argument("--ramp-seconds", type=float, default=2.0, help="a burst's start spread")
    parser.add_argument("--max-p95-ms", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--speakers", type=int, default=5, help="readers enrolled")
    parser.add_argument("--threads", type=int, default=2, help="the service's inference threads")
    parser.add_argument(
        "--schedule",
        metavar="MIN,STEP,MAX",
        help="decision schedule in s of speech (default: the service's, 3,2,10)",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (role with CREATEDB): a fresh database there, dropped "
        "afterwards; default: SQLite",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        metavar="N",
        help="N replicas behind HAProxy with Redis, the calls through the balancer; several "
        "counts run one after another, each on a fresh topology (needs --database-url; "
        "default: one process, no balancer)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.replicas and (args.database_url is None or min(args.replicas) < 1):
        parser.error("--replicas needs --database-url (replicas share PostgreSQL) and N >= 1")
    if args.call_seconds is None:
        args.call_seconds = BURST_CALL_SECONDS if args.poisson is None else POISSON_CALL_SECONDS
    if min(args.calls, args.call_seconds, args.duration, args.poisson or 1) <= 0:
        parser.error("--calls, --call-seconds, --duration and --poisson must be positive")
    return args


def service_settings(args: argparse.Namespace) -> dict[str, str]:
    settings = {
        "BIOMETRICS_INFERENCE_THREADS": str(args.threads),
        "BIOMETRICS_STREAM_MAX_SOCKETS_PER_KEY": "0",  # every call on the one stream key
        # Ended calls stay in memory a while (and count): a search's steps add up.
        "BIOMETRICS_STREAM_MAX_CALLS": str(STREAM_MAX_CALLS),
    }
    if args.schedule:
        settings.update(zip(SCHEDULE_VARIABLES, args.schedule.split(","), strict=True))
    return settings


def measure_all(args: argparse.Namespace, bench: Bench, rows: list[dict[str, Any]]) -> int | None:
    """The run (or the search) the arguments ask for on ``bench``, each row added to
    ``rows``; the largest value that passed, for a search."""

    def measure(value: float) -> dict[str, Any]:
        row = (
            burst(bench, int(value), args.ramp_seconds)
            if args.poisson is None
            else poisson(bench, value, args.duration, args.seed)
        )
        rows.append(row)
        print(f"{row['mode']} {value:g}: {'pass' if row['pass'] else 'fail'}", flush=True)
        return row

    if args.search and args.poisson is None:
        return search(measure, args.calls, MAX_SEARCH_CALLS)
    if args.search:
        return search(measure, round(args.poisson), MAX_SEARCH_RATE)
    measure(args.calls if args.poisson is None else args.poisson)
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not speech_folder(args.speech).is_dir():
        print(f"skipped: no speech folder at {args.speech}; pass --speech", file=sys.stderr)
        return 2
    settings = service_settings(args)
    rows: list[dict[str, Any]] = []
    best: int | None = None
    try:
        for replicas in args.replicas or [None]:
            with running(args, settings, replicas) as bench:
                best = measure_all(args, bench, rows)
                schedule = {
                    "min": bench.schedule.min_frames * FRAME_SECONDS,
                    "step": bench.schedule.step_frames * FRAME_SECONDS,
                    "max": bench.schedule.max_frames * FRAME_SECONDS,
                }
    except (SoakError, ClusterError) as error:
        print(f"live_calls: {error}", file=sys.stderr)
        return 2
    result = {
        "benchmark": "live_calls",
        "model": args.model,
        "database": "sqlite" if args.database_url is None else "postgresql",
        "call_seconds": args.call_seconds,
        "ramp_seconds": args.ramp_seconds,
        "duration_seconds": args.duration if args.poisson is not None else None,
        "schedule_seconds": schedule,
        "max_p95_ms": args.max_p95_ms,
        "threads": args.threads,
        "replicas": args.replicas,
        "machine": machine(),
        "rows": rows,
    }
    if args.search:
        result["largest_passing"] = best
    print(f"\nmodel {args.model}, {args.call_seconds:g} s calls, latencies in ms\n")
    table(rows)
    if args.search:
        unit = "calls at once" if args.poisson is None else "calls/hour"
        print(f"\nlargest passing (first-verdict p95 <= {args.max_p95_ms:g} ms): {best} {unit}")
    write_json(args.out, result)
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
