"""What the service process costs the machine while a run goes on: CPU time and resident
memory of it and any processes it started, read from ``/proc`` (Linux only) by a sampling
thread, so that neither the client's own work nor other processes on the box count."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

PROC = Path("/proc")
SAMPLE_SECONDS = 0.25
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class Usage:
    """The process tree over one run: CPU in per cent of one core (200 = two cores busy),
    and resident memory at the start and at its peak, in MiB."""

    seconds: float
    cpu_percent: float
    start_rss_mib: float
    peak_rss_mib: float


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (those still running)."""
    pids, index = [pid], 0
    while index < len(pids):
        for task in (PROC / str(pids[index]) / "task").glob("*/children"):
            try:
                pids.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
        index += 1
    return pids


def _cpu_ticks(pid: int) -> int:
    # The command name (field 2) may hold spaces: count fields after its closing ')'.
    fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _rss_bytes(pid: int) -> int:
    return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_BYTES


class ProcessMeter:
    """Samples process trees (one service's, or every replica's together) from ``start`` to
    ``stop``; ``stop`` returns their usage summed."""

    def __init__(self, *pids: int) -> None:
        self._pids = pids
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="meter", daemon=True)
        self._ticks: dict[int, int] = {}  # the latest reading per process (exited ones kept)
        self._peak_rss = 0
        self._start_rss = 0
        self._start_ticks = 0
        self._started = 0.0

    def start(self) -> None:
        self._start_ticks = self._read()
        self._start_rss = self._peak_rss
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> Usage:
        self._stopping.set()
        self._thread.join()
        self._read()
        seconds = time.monotonic() - self._started
        used = sum(self._ticks.values()) - self._start_ticks
        mib = 1024.0 * 1024.0
        return Usage(
            seconds=seconds,
            cpu_percent=100.0 * used / TICKS_PER_SECOND / max(seconds, 1e-9),
            start_rss_mib=self._start_rss / mib,
            peak_rss_mib=self._peak_rss / mib,
        )

    def _sample(self) -> None:
        while not self._stopping.wait(SAMPLE_SECONDS):
            self._read()

    def _read(self) -> int:
        """Take a reading; the CPU ticks of the tree so far."""
        rss = 0
        for pid in (pid for root in self._pids for pid in _tree(root)):
            try:
                self._ticks[pid] = _cpu_ticks(pid)
                rss += _rss_bytes(pid)
            except (OSError, IndexError, ValueError):
                continue  # exited between the listing and the reading
        self._peak_rss = max(self._peak_rss, rss)
        return sum(self._ticks.values())
