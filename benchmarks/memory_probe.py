"""Inside the service the memory benchmark runs (``--diagnose``): on each SIGUSR1, one JSON
line in the file ``MEMORY_PROBE_OUT`` names of what the process holds, so that a growing
resident size can be told apart as Python objects kept (a leak) or as heap memory freed
but not returned (the allocator).

The first signal starts ``tracemalloc`` and takes the baseline (a snapshot and the ``gc``
object counts by type); each later one writes the resident size and thread count, the
memory tracemalloc traces, the ten source lines whose traced memory grew most since the
baseline, the types whose object counts grew most, and then the resident size again after
a full ``gc.collect()`` (what it frees was cyclic garbage, held until the collector's
oldest generation runs) and after glibc's ``malloc_trim(0)``: what that gives back was
free but unreturned.

The benchmark loads it into ``biometrics serve`` through a ``sitecustomize`` module of its
own (:func:`site_folder`); the service itself has no such hook.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import signal
import threading
import tracemalloc
from pathlib import Path
from types import FrameType

from biometrics import memory

OUT_VARIABLE = "MEMORY_PROBE_OUT"
TOP = 10
TRACE_FRAMES = 1
# What a call holds in memory until it is evicted: counted outright, to see calls kept.
WATCHED = ("CallSession", "ParticipantStream", "SpeechBuffer", "Subscription")


class _Probe:
    def __init__(self, out: Path) -> None:
        self._out = out
        self._baseline: tracemalloc.Snapshot | None = None
        self._counts: collections.Counter[str] = collections.Counter()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._baseline is None:
            tracemalloc.start(TRACE_FRAMES)
            gc.collect()
            self._counts = _type_counts()
            self._baseline = tracemalloc.take_snapshot()
            self._write({"probe": "baseline", "rss_mb": memory.resident_mb()})
            return
        rss = memory.resident_mb()
        snapshot = tracemalloc.take_snapshot()
        grown = snapshot.compare_to(self._baseline, "lineno")[:TOP]
        now = _type_counts()
        watched = {name: now[name] for name in WATCHED}
        # What only a full collection frees is cyclic garbage: held, not leaked, until the
        # collector's oldest generation runs (rarely, in a process of many objects).
        unreachable = gc.collect()
        now = _type_counts()
        counts = now.copy()
        counts.subtract(self._counts)
        traced, _peak = tracemalloc.get_traced_memory()
        trimmed = memory.trim()
        self._write(
            {
                "probe": "sample",
                "rss_mb": rss,
                "threads": threading.active_count(),
                "os_threads": len(os.listdir("/proc/self/task")),
                "traced_mb": traced / 2**20,
                "top_growth": [
                    {"where": str(stat.traceback), "kb": stat.size_diff / 1024} for stat in grown
                ],
                "objects_grown": dict(counts.most_common(TOP)),
                "gc_objects": len(gc.get_objects()),
                "watched": watched,
                "watched_after_collect": {name: now[name] for name in WATCHED},
                "unreachable_collected": unreachable,
                "rss_after_collect_mb": memory.resident_mb(),
                "rss_after_trim_mb": trimmed.rss_after_mb,
                "trim_released_mb": trimmed.released_mb,
            }
        )

    def _write(self, line: dict[str, object]) -> None:
        with self._out.open("a") as out:
            out.write(json.dumps(line) + "\n")


def _type_counts() -> collections.Counter[str]:
    return collections.Counter(type(thing).__name__ for thing in gc.get_objects())


def install() -> None:
    """In a process started with ``MEMORY_PROBE_OUT`` set: answer SIGUSR1 (else nothing)."""
    out = os.environ.get(OUT_VARIABLE)
    if out:
        signal.signal(signal.SIGUSR1, _Probe(Path(out)))


def site_folder(folder: Path) -> Path:
    """A folder holding a ``sitecustomize`` that installs the probe: put it first on the
    service's PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "from benchmarks.memory_probe import install\n\ninstall()\n"
    )
    return folder


def read(out: Path) -> list[dict[str, object]]:
    if not out.is_file():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line]
