"""Benchmark: the resident memory of ``biometrics serve`` under live calls, and whether it
comes back once the calls have left memory.

    python -m benchmarks.memory --scenario sequential --calls 1000 --speed 20 \\
        --out results/memory-sequential.json
    python -m benchmarks.memory --scenario long --call-minutes 60 --speed 20 \\
        --out results/memory-long.json
    python -m benchmarks.memory --scenario rounds --rounds 6 --concurrent 20 --speed 4 \\
        --out results/memory-rounds.json

The service is started as the soak starts it (a subprocess on SQLite, auth on), speakers
are enrolled from real speech, and calls are played by the soak's call player (two
participants each, the caller claimed) faster than real time (``--speed``):

- ``long``: one call of ``--call-minutes`` of audio;
- ``sequential``: ``--calls`` short calls (``--call-seconds``) one after the other;
- ``rounds``: ``--rounds`` rounds of ``--concurrent`` calls at once, each round followed by
  the calls' eviction (``--retention-seconds`` after they end).

VmRSS (and the thread count) of the service's process is read from /proc every
``--sample-seconds``. The report: a least-squares slope of RSS against calls done (MB per
call) and against time (MB per minute) once the first ``--warmup`` share of the run is
over, the same slope of the RSS after each wave's eviction alone, and that RSS against the
baseline taken before the first call.
``--no-trim`` runs the service with ``BIOMETRICS_MEMORY_TRIM=false`` (freed heap kept, as
before the fix), ``--arena-max N`` with glibc's ``MALLOC_ARENA_MAX=N``, and ``--diagnose``
loads :mod:`benchmarks.memory_probe` into it: tracemalloc growth, ``gc`` counts by type and
what ``malloc_trim(0)`` gives back, at the baseline, after each round and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import memory_probe
from benchmarks.common import LIBRISPEECH_DEV, machine, patched_environ, print_table, write_json
from biometrics.soak.calls import CallRun
from biometrics.soak.options import SoakError
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.report import CallResult, Tally
from biometrics.soak.runner import enroll, plan_call
from biometrics.soak.service import Service, start_service
from biometrics.soak.speech import Voice, load_voices

SCENARIOS = ("long", "sequential", "rounds")
PROBE_SECONDS = 30.0  # for the probe's line to appear (a snapshot of a large heap is slow)
# Past the retention, for the service's sweep (every half retention, at least 0.5 s) to run.
SWEEP_MARGIN_SECONDS = 1.5


@dataclasses.dataclass(frozen=True)
class Sample:
    seconds: float  # since the baseline
    calls: int  # calls done by then
    rss_mb: float
    threads: int


def process_status(pid: int) -> tuple[float, int]:
    """VmRSS in MB and the thread count of a process, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


class Sampler(threading.Thread):
    """Reads the service's VmRSS every ``interval`` seconds, with the calls done so far."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self._pid = pid
        self._interval = interval
        self._halt = threading.Event()
        self._began = time.monotonic()
        self.calls = 0
        self.samples: list[Sample] = []

    def take(self) -> Sample:
        rss, threads = process_status(self._pid)
        sample = Sample(time.monotonic() - self._began, self.calls, rss, threads)
        self.samples.append(sample)
        return sample

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            with contextlib.suppress(OSError):
                self.take()

    def stop(self) -> None:
        self._halt.set()
        self.join()


def slope(xs: list[float], ys: list[float]) -> float | None:
    """The least-squares slope of ys against xs; None with fewer than two distinct xs."""
    if len(set(xs)) < 2:
        return None
    return float(np.polyfit(np.asarray(xs), np.asarray(ys), 1)[0])


def fit(samples: list[Sample], warmup: float) -> dict[str, float | None]:
    """MB per call and MB per minute over the samples after the first ``warmup`` share of
    the run's time, up to the end of the last call (its eviction is reported apart)."""
    if not samples:
        return {"mb_per_call": None, "mb_per_minute": None}
    start = samples[-1].seconds * warmup
    kept = [s for s in samples if s.seconds >= start and s.calls < samples[-1].calls]
    per_call = slope([float(s.calls) for s in kept], [s.rss_mb for s in kept])
    per_second = slope([s.seconds for s in kept], [s.rss_mb for s in kept])
    return {
        "mb_per_call": per_call,
        "mb_per_minute": None if per_second is None else per_second * 60,
    }


class Probe:
    """The in-service probe, when ``--diagnose``: a signal, then its line."""

    def __init__(self, service: Service | None, out: Path) -> None:
        self._service = service
        self._out = out

    def ask(self, label: str) -> dict[str, Any] | None:
        if self._service is None:
            return None
        lines = len(memory_probe.read(self._out))
        self._service.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            found = memory_probe.read(self._out)
            if len(found) > lines:
                return {"label": label, **found[-1]}
            time.sleep(0.2)
        return {"label": label, "error": f"no probe answer within {PROBE_SECONDS:g} s"}


async def play(runs: list[CallRun], sampler: Sampler) -> list[CallResult]:
    await asyncio.gather(*(run.play() for run in runs))
    results = await asyncio.gather(*(asyncio.to_thread(run.read_back) for run in runs))
    sampler.calls += len(runs)
    return list(results)


async def scenario(
    args: argparse.Namespace,
    service: Service,
    voices: list[Voice],
    sampler: Sampler,
    probe: Probe,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Tally]:
    """Play the scenario's calls; each checkpoint (after a call or a round, evicted) and
    the probe's lines."""
    tally = Tally()
    checkpoints: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    waves = {"long": 1, "sequential": args.calls, "rounds": args.rounds}[args.scenario]
    at_once = args.concurrent if args.scenario == "rounds" else 1
    number = 0
    for wave in range(waves):
        plans = [plan_call(voices, number + i, None) for i in range(at_once)]
        number += at_once
        runs = [CallRun(plan, service, args.speed, tally) for plan in plans]
        await play(runs, sampler)
        peak = max((s.rss_mb for s in sampler.samples), default=0.0)
        if args.scenario != "sequential" or wave == waves - 1:
            await asyncio.sleep(args.retention_seconds + SWEEP_MARGIN_SECONDS)  # evicted by then
        sample = await asyncio.to_thread(sampler.take)
        checkpoints.append(
            {
                "wave": wave + 1,
                "calls": sampler.calls,
                "seconds": sample.seconds,
                "rss_mb": sample.rss_mb,
                "peak_rss_mb": max(peak, sample.rss_mb),
                "threads": sample.threads,
            }
        )
        if args.scenario != "sequential" or wave == waves - 1:
            answer = await asyncio.to_thread(probe.ask, f"after wave {wave + 1}")
            if answer is not None:
                probes.append(answer)
    return checkpoints, probes, tally


@contextlib.contextmanager
def service_environment(args: argparse.Namespace, folder: Path) -> Iterator[Path]:
    """The settings the service under test is started with (start_service passes this
    process's environment on); the probe's output file."""
    probe_out = folder / "probe.jsonl"
    env = {
        "BIOMETRICS_STREAM_RETENTION_SECONDS": str(args.retention_seconds),
        "BIOMETRICS_MEMORY_TRIM": "false" if args.no_trim else "true",
        "BIOMETRICS_INFERENCE_THREADS": str(args.threads),
        "BIOMETRICS_LOG_LEVEL": "WARNING",
    }
    if args.arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.arena_max)
    if args.diagnose:
        site = memory_probe.site_folder(folder / "probe-site")
        root = Path(__file__).resolve().parents[1]
        path = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(root), path) if p)
        env[memory_probe.OUT_VARIABLE] = str(probe_out)
    with patched_environ(env):
        yield probe_out


def run(args: argparse.Namespace) -> dict[str, Any]:
    call_seconds = args.call_minutes * 60 if args.scenario == "long" else args.call_seconds
    voices = load_voices(args.speech, args.speakers, call_seconds)
    with (
        tempfile.TemporaryDirectory(prefix="biometrics-memory-") as tmp,
        WebhookSink(secrets.token_hex(16)) as webhook,
    ):
        folder = Path(tmp)
        with service_environment(args, folder) as probe_out:
            service = start_service(
                folder, f"sqlite:///{folder / 'memory.db'}", args.model, webhook
            )
        try:
            enroll(service, voices)
            probe = Probe(service if args.diagnose else None, probe_out)
            sampler = Sampler(service.process.pid, args.sample_seconds)
            time.sleep(1.0)
            baseline = sampler.take()
            first = probe.ask("baseline")
            sampler.start()
            try:
                checkpoints, probes, tally = asyncio.run(
                    scenario(args, service, voices, sampler, probe)
                )
            finally:
                sampler.stop()
        finally:
            service.stop()
    samples = sampler.samples
    after = checkpoints[-1]["rss_mb"]
    return {
        "benchmark": "memory",
        "scenario": args.scenario,
        "model": args.model,
        "speed": args.speed,
        "call_seconds": call_seconds,
        "calls": sampler.calls,
        "concurrent": args.concurrent if args.scenario == "rounds" else 1,
        "trim": not args.no_trim,
        "arena_max": args.arena_max,
        "machine": machine(),
        "baseline_rss_mb": baseline.rss_mb,
        "peak_rss_mb": max(s.rss_mb for s in samples),
        "final_rss_mb": after,
        "final_minus_baseline_mb": after - baseline.rss_mb,
        "threads_max": max(s.threads for s in samples),
        **fit(samples, args.warmup),
        # After each wave's eviction only: what stays, apart from the peaks within waves.
        "evicted_mb_per_call": slope(
            [float(c["calls"]) for c in checkpoints], [c["rss_mb"] for c in checkpoints]
        ),
        "checkpoints": checkpoints,
        "probes": [p for p in (first, *probes) if p is not None],
        "errors": dict(tally.error_kinds),
        "error_samples": tally.errors[:5],
        "samples": [dataclasses.asdict(s) for s in samples],
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"{result['scenario']}: {result['calls']} calls of {result['call_seconds']:g} s "
        f"at {result['speed']:g}x, model {result['model']}, trim {result['trim']}, "
        f"MALLOC_ARENA_MAX {result['arena_max'] or 'unset'}\n"
    )
    rows = result["checkpoints"]
    if len(rows) > 12:  # sequential: every call is a checkpoint; a dozen tell the trend
        step = -(-len(rows) // 12)
        rows = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    print_table(
        ["wave", "calls", "seconds", "RSS MB", "peak MB", "threads"],
        [
            [r["wave"], r["calls"], r["seconds"], r["rss_mb"], r["peak_rss_mb"], r["threads"]]
            for r in rows
        ],
    )
    per_call, per_minute = result["mb_per_call"], result["mb_per_minute"]
    print(
        f"\nbaseline {result['baseline_rss_mb']:.0f} MB, peak {result['peak_rss_mb']:.0f} MB, "
        f"after the last eviction {result['final_rss_mb']:.0f} MB "
        f"({result['final_minus_baseline_mb']:+.0f} MB)"
    )
    if per_call is not None:
        print(f"slope after warm-up: {per_call:+.3f} MB per call")
    if per_minute is not None:
        print(f"slope after warm-up: {per_minute:+.2f} MB per minute")
    if result["evicted_mb_per_call"] is not None:
        print(f"after each eviction: {result['evicted_mb_per_call']:+.3f} MB per call")
    for line in result["probes"]:
        if line.get("probe") == "sample":
            print(
                f"probe {line['label']}: RSS {line['rss_mb']:.0f} MB, traced "
                f"{line['traced_mb']:.1f} MB, malloc_trim gave back "
                f"{line['trim_released_mb']:.0f} MB, {line['os_threads']} threads, "
                f"objects grown {line['objects_grown']}"
            )
    if result["errors"]:
        print(f"errors: {result['errors']} e.g. {result['error_samples'][:2]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="sequential")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--speech", type=Path, default=LIBRISPEECH_DEV)
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--speed", type=float, default=10.0, help="times real time")
    parser.add_argument("--call-minutes", type=float, default=60.0, help="long: its audio")
    parser.add_argument("--call-seconds", type=float, default=20.0, help="sequential, rounds")
    parser.add_argument("--calls", type=int, default=100, help="sequential")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrent", type=int, default=20, help="rounds: calls at once")
    parser.add_argument("--retention-seconds", type=float, default=2.0)
    parser.add_argument("--sample-seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run")
    parser.add_argument("--threads", type=int, default=2, help="inference threads")
    parser.add_argument("--no-trim", action="store_true", help="BIOMETRICS_MEMORY_TRIM=false")
    parser.add_argument("--arena-max", type=int, default=0, help="MALLOC_ARENA_MAX (0: unset)")
    parser.add_argument("--diagnose", action="store_true", help="tracemalloc, gc, malloc_trim")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if min(args.speed, args.call_minutes, args.call_seconds, args.calls, args.rounds) <= 0:
        parser.error("speed, call length, calls and rounds must be positive")
    try:
        result = run(args)
    except SoakError as error:
        print(f"skipped: {error}", file=sys.stderr)
        return 2
    report(result)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
