"""Profile: where ``biometrics serve`` spends its time under a load, sampled by py-spy.

    python -m benchmarks.profile --load rest --seconds 20 --out results/profile-rest
    python -m benchmarks.profile --load live --seconds 20 --out results/profile-live

The service is started as the soak starts it (a subprocess on SQLite, auth on) with
``--model``. ``rest``: ``--clients`` threads post ``POST /v1/verify`` with 3 s crops of
real speech back to back, as benchmarks.model_vs_service does; ``live``: ``--calls`` live
calls at a time, played by the soak's call player at ``--speed`` times real time, one
wave after another. Once the load runs, ``py-spy record`` samples every thread of the
service for ``--seconds`` (idle threads left out, ``--native`` for C frames) and writes
``<out>.folded``, collapsed stacks that speedscope (https://www.speedscope.app) and
flamegraph.pl open. Printed: the frames by self time, and each sample's share by what it
was doing (the model, SQL, audio, JSON, base64, the socket, HTTP, the event loop, or, with
``--native``, which also samples threads blocked in C, waiting for work).
py-spy needs ptrace rights over the service (root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_SPEECH,
    SpeechMissing,
    crops,
    load_speakers,
    machine,
    patched_environ,
    print_table,
    write_json,
)
from benchmarks.model_vs_service import CROP_SECONDS, SERVICE_ENV, enroll, saturate, wav
from biometrics.soak.calls import CallRun
from biometrics.soak.options import SoakError
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.report import Tally
from biometrics.soak.runner import enroll as enroll_voices
from biometrics.soak.runner import plan_call
from biometrics.soak.service import Service, start_service
from biometrics.soak.speech import load_voices

TOP = 15
# A sample counts for the first of these its stack passes through, innermost first.
CATEGORIES = (
    ("model (torch, speechbrain)", ("torch/", "speechbrain/", "biometrics/embedding/")),
    ("SQL", ("sqlalchemy/", "sqlite3", "psycopg", "biometrics/store/")),
    ("audio, VAD, quality", ("biometrics/audio/", "soundfile", "scipy/")),
    ("JSON", ("json/",)),
    ("base64", ("base64",)),
    ("websocket", ("websockets/",)),
    ("HTTP (uvicorn, starlette)", ("uvicorn/", "h11/", "starlette/", "multipart/")),
    ("event loop", ("asyncio/",)),
)
# With --native py-spy keeps threads blocked in the C library; a sample whose innermost
# Python frame is one of these is a thread waiting for work, not doing any.
WAITS = ("Condition.wait (", "Event.wait (", "Queue.get (", "_worker (")
WAITING = "waiting (idle threads)"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy") or Path(sys.executable).with_name("py-spy")
    return str(found) if Path(found).is_file() else None


def record(pid: int, seconds: float, out: Path, native: bool, rate: int) -> None:
    command = [
        py_spy() or "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    # Without pausing the service, unless C frames are wanted: py-spy needs it paused to
    # unwind them.
    command.append("--native" if native else "--nonblocking")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SoakError(f"py-spy record failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def aggregate(folded: Path) -> dict[str, Any]:
    """Self time by frame and samples by category, from collapsed stacks."""
    by_self: collections.Counter[str] = collections.Counter()
    by_category: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        by_self[_short(frames[-1])] += count
        by_category[_category(frames)] += count
    return {
        "samples": total,
        "top_self": [
            {"frame": frame, "samples": n, "share": n / total}
            for frame, n in by_self.most_common(TOP)
        ],
        "categories": {name: n / total for name, n in by_category.most_common()} if total else {},
    }


def _short(frame: str) -> str:
    """``function (…/package/module.py:line)`` with the path cut to its last two parts."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    path = "/".join(match["file"].split("/")[-2:])
    return f"{match['function']} ({path}{':' + match['line'] if match['line'] else ''})"


def _category(frames: list[str]) -> str:
    python = [frame for frame in frames if ".py" in frame]
    if python and python[-1].startswith(WAITS):
        return WAITING
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def rest_load(args: argparse.Namespace, service: Service) -> Callable[[], object]:
    """Enroll the speakers; the load: verifying clients for the run's length."""
    speakers = load_speakers(args.speech)
    enrollment = {name: files[: max(1, len(files) // 2)] for name, files in speakers.items()}
    trials = [
        (name, wav(clip))
        for name, files in speakers.items()
        for clip in crops(files[len(files) // 2 :], CROP_SECONDS)
    ]
    enroll(service.url, service.admin_key, enrollment)
    seconds = args.seconds + args.warmup + 2
    return lambda: saturate(service.url, service.admin_key, trials, args.clients, seconds)


def live_load(args: argparse.Namespace, service: Service) -> Callable[[], object]:
    """Enroll the speakers; the load: waves of ``calls`` live calls for the run's length."""
    voices = load_voices(args.speech, 3, args.call_seconds)
    enroll_voices(service, voices)

    async def waves() -> Tally:
        tally, number = Tally(), 0
        deadline = time.monotonic() + args.seconds + args.warmup + 2
        while time.monotonic() < deadline:
            plans = [plan_call(voices, number + i, None) for i in range(args.calls)]
            number += args.calls
            runs = [CallRun(plan, service, args.speed, tally) for plan in plans]
            await asyncio.gather(*(run.play() for run in runs))
            await asyncio.gather(*(asyncio.to_thread(run.read_back) for run in runs))
        return tally

    return lambda: asyncio.run(waves())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", choices=("rest", "live"), default="rest")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--seconds", type=float, default=20.0, help="sampled")
    parser.add_argument("--warmup", type=float, default=3.0, help="load before sampling")
    parser.add_argument("--clients", type=int, default=4, help="rest")
    parser.add_argument("--calls", type=int, default=4, help="live: calls at a time")
    parser.add_argument("--call-seconds", type=float, default=30.0, help="live")
    parser.add_argument("--speed", type=float, default=2.0, help="live: times real time")
    parser.add_argument("--threads", type=int, default=2, help="inference threads")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--native", action="store_true", help="C and C++ frames too")
    parser.add_argument("--out", type=Path, default=Path("results/profile"))
    args = parser.parse_args(argv)
    if py_spy() is None:
        print("skipped: py-spy is not installed (pip install '.[bench]')", file=sys.stderr)
        return 2
    folded = args.out.with_suffix(".folded")
    folded.parent.mkdir(parents=True, exist_ok=True)
    env = {**SERVICE_ENV, "BIOMETRICS_INFERENCE_THREADS": str(args.threads)}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="biometrics-profile-") as tmp,
            WebhookSink(secrets.token_hex(16)) as webhook,
        ):
            folder = Path(tmp)
            with patched_environ(env):
                service = start_service(folder, f"sqlite:///{folder / 'p.db'}", args.model, webhook)
            try:
                load = (rest_load if args.load == "rest" else live_load)(args, service)
                loader = threading.Thread(target=load, daemon=True)
                loader.start()
                time.sleep(args.warmup)
                record(service.process.pid, args.seconds, folded, args.native, args.rate)
                loader.join()
            finally:
                service.stop()
    except (SoakError, SpeechMissing) as error:
        print(f"skipped: {error}", file=sys.stderr)
        return 2
    result = {
        "benchmark": "profile",
        "load": args.load,
        "model": args.model,
        "seconds": args.seconds,
        "clients": args.clients if args.load == "rest" else None,
        "calls": args.calls if args.load == "live" else None,
        "speed": args.speed if args.load == "live" else None,
        "native": args.native,
        "folded": str(folded),
        "machine": machine(),
        **aggregate(folded),
    }
    print(f"{args.load} load, model {args.model}: {result['samples']} samples -> {folded}\n")
    print_table(
        ["frame (self time)", "samples", "share"],
        [[row["frame"], row["samples"], row["share"]] for row in result["top_self"]],
    )
    print()
    print_table(["doing", "share"], [[name, share] for name, share in result["categories"].items()])
    write_json(args.out.with_suffix(".json"), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
