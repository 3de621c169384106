"""Benchmark: the cost of sharing live calls between replicas through Redis. Two replicas
of the service (uvicorn servers in threads of this process, each with its own event loop)
share one database and a ``redis-server`` of their own; each call's socket goes to A, its
claim to B, and its server-sent events are read from B.

    python -m benchmarks.replicas --calls 20 --out results/replicas.json

Reported: the cross-replica claim latency (B's ``PUT .../claim`` answered, which it is only
once A has applied the claim to the call it streams: an upper bound on the claim reaching A),
the event fan-out latency (a verdict made on A, by its ``created_at``, to its
``verdict.changed`` event read over SSE from B), each as p50/p95/max, and the requests both
replicas wrote to Redis per verdict (counted at the client's connections: a pipeline or a
script is one; lease renewals, the subscribers' replays and the claims' requests and replies
included). Calls run one after another, each ``--call-seconds`` of a LibriSpeech reader sent
as fast as the socket takes it, the reader enrolled first from other recordings. Both
replicas, Redis and this client share the machine's cores: the figures say what sharing
costs, not what a cluster of boxes does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import io
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from redis.asyncio.connection import AbstractConnection

from benchmarks.common import (
    LIBRISPEECH_DEV,
    Samples,
    load_speakers,
    machine,
    print_table,
    running_server,
    skips_without_speech,
    write_json,
)
from biometrics import simulator, topology
from biometrics.app import create_app
from biometrics.client import Client
from biometrics.config import Settings
from biometrics.embedding import load_encoder
from biometrics.store import Database

CALLER = "8:acs:caller"
SPEAKER = "reader"
START = datetime.fromisoformat("2026-01-01T00:00:00+00:00")


class RequestCounter:
    """Requests written to Redis by this process's clients (both replicas'), by patching
    the one method every command and pipeline goes out through."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        original = AbstractConnection.send_packed_command

        async def send(connection: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            with self._lock:
                self.count += 1
            await original(connection, *args, **kwargs)

        AbstractConnection.send_packed_command = send  # type: ignore[method-assign, assignment]
        try:
            yield
        finally:
            AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


@dataclasses.dataclass
class Follower:
    """One call's events read from replica B in a thread: when each verdict event came."""

    client: Client
    call_id: str
    arrivals: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # created_at, t

    def run(self) -> None:
        for event in self.client.events(self.call_id):
            if event.type == "verdict.changed":
                self.arrivals.append((event.data["created_at"], time.time()))
            if event.type == "call.ended":
                return


def wav(samples: Samples) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, 16_000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan")}
    array = np.array(values) * 1000
    return {
        "n": len(values),
        "p50_ms": float(np.percentile(array, 50)),
        "p95_ms": float(np.percentile(array, 95)),
        "max_ms": float(array.max()),
    }


def run(options: argparse.Namespace, folder: Path) -> dict[str, Any]:
    (utterances,) = load_speakers(options.speech, limit=1).values()
    audio = np.concatenate(utterances)
    enrollment, call_audio = audio[: 30 * 16_000], audio[30 * 16_000 :]
    size = int(options.call_seconds * 16_000)
    key_file = folder / "voiceprints.key"
    key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    key_file.chmod(0o600)
    database_url = options.database_url or f"sqlite:///{folder / 'biometrics.db'}"
    Database(database_url).upgrade()
    counter = RequestCounter()
    with topology.redis_server(folder) as redis_url:
        settings = Settings(
            database_url=database_url,
            auth_enabled=False,
            auto_migrate=False,
            encryption_key_file=key_file,
            model_cache_dir=folder / "models",
            redis_url=redis_url,
            stream_idle_timeout_seconds=30.0,
            min_enroll_speech_seconds=15.0,
            lockout_failures=0,
            rate_limit_per_minute=0,
            sweep_interval_seconds=0,
        )
        encoder = load_encoder(settings.model_source, settings.model_cache_dir)
        with (
            running_server(create_app(settings, encoder=encoder)) as a,
            running_server(create_app(settings, encoder=encoder)) as b,
            Client(a) as on_a,
            Client(b) as on_b,
        ):
            on_a.create_speaker(SPEAKER)
            on_a.enroll(SPEAKER, wav(enrollment))
            claims: list[float] = []
            followers: list[Follower] = []
            with counter.counting():
                for index in range(options.calls):
                    start = (index * size) % max(1, len(call_audio) - size)
                    samples = call_audio[start : start + size]
                    call_id = f"bench-{index}"
                    follower = Follower(Client(b), call_id)
                    followers.append(follower)
                    asyncio.run(one_call(a, call_id, samples, on_b, claims, follower))
                    follower.client.close()
                requests = counter.count
            verdicts = sum(len(f.arrivals) for f in followers)
    fan_out = [
        arrived - datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        for follower in followers
        for created, arrived in follower.arrivals
    ]
    return {
        "benchmark": "replicas",
        "machine": machine(),
        "replicas": 2,
        "database": "postgresql" if options.database_url else "sqlite",
        "calls": options.calls,
        "call_seconds": options.call_seconds,
        "verdicts": verdicts,
        "claim_latency": percentiles(claims),
        "event_fan_out_latency": percentiles(fan_out),
        "redis_requests": requests,
        "redis_requests_per_verdict": requests / verdicts if verdicts else float("nan"),
    }


async def one_call(
    a: str, call_id: str, samples: Samples, on_b: Client, claims: list[float], follower: Follower
) -> None:
    async def claim_on_b() -> None:
        await wait_ongoing(on_b, call_id)
        thread = threading.Thread(target=follower.run, daemon=True)
        thread.start()
        began = time.monotonic()
        await asyncio.to_thread(on_b.claim, call_id, CALLER, SPEAKER)
        claims.append(time.monotonic() - began)
        follower_threads.append(thread)

    follower_threads: list[threading.Thread] = []
    stream = simulator.Stream(CALLER, simulator.to_pcm(samples))
    await simulator.stream_call(
        a.replace("http://", "ws://") + "/ws/acs",
        {"x-ms-call-connection-id": call_id},
        simulator.call_format(16_000, call_id),
        simulator.frames_for([stream], 16_000, START),
        after_metadata=claim_on_b,
    )
    for thread in follower_threads:
        await asyncio.to_thread(thread.join, 60)


async def wait_ongoing(api: Client, call_id: str) -> None:
    """Until B reads the call as streaming (from the database A writes)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if (await asyncio.to_thread(api.get_call, call_id)).status == "ONGOING":
                return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"call {call_id} never showed as ONGOING on replica B")


def report(result: dict[str, Any]) -> dict[str, Any]:
    """Print the latencies as a table and the requests per verdict; the result."""
    rows = [
        [name, *(result[key][column] for column in ("n", "p50_ms", "p95_ms", "max_ms"))]
        for name, key in (
            ("claim B -> A (ms)", "claim_latency"),
            ("event A -> SSE on B (ms)", "event_fan_out_latency"),
        )
    ]
    print_table(["", "n", "p50", "p95", "max"], rows)
    per_verdict = result["redis_requests_per_verdict"]
    print(
        f"\nRedis requests per verdict: {per_verdict:.2f} ({result['redis_requests']} "
        f"requests, {result['verdicts']} verdicts, {result['calls']} calls, both replicas)"
    )
    return result


@skips_without_speech
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--call-seconds", type=float, default=8.0)
    parser.add_argument("--speech", type=Path, default=LIBRISPEECH_DEV / "train-clean-5")
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--out", type=Path)
    options = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print(
            "skipped: redis-server is not installed (apt-get install redis-server)", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="replicas-") as folder:
        result = run(options, Path(folder))
    write_json(options.out, report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
