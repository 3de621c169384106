"""Giving freed heap memory back to the operating system.

glibc's malloc keeps memory it has freed: each thread that allocates gets an arena of its
own (up to eight per core), and the service allocates from many threads (the request
thread pool, the inference threads, torch's own). A call's speech buffers and the tensors
its embeddings went through are freed when the call is evicted, but the pages stay in
those arenas, fragmented, and the resident size only grows from one burst of calls to
the next. ``malloc_trim(0)`` walks every arena and returns its free pages (``madvise``),
which is what :func:`trim` does after calls have left memory. On a C library other than
glibc (musl, macOS) there is no such call and :func:`trim` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

STATUS = Path("/proc/self/status")


@dataclasses.dataclass(frozen=True)
class Trimmed:
    """What one trim did: whether the C library could, and the resident size around it."""

    supported: bool
    rss_before_mb: float | None
    rss_after_mb: float | None
    seconds: float

    @property
    def released_mb(self) -> float:
        if self.rss_before_mb is None or self.rss_after_mb is None:
            return 0.0
        return self.rss_before_mb - self.rss_after_mb


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim_function: Callable[[int], int] = function
    return trim_function


def supported() -> bool:
    return _malloc_trim() is not None


def resident_mb() -> float | None:
    """This process's resident set (VmRSS) in MB, or None where /proc has no status."""
    try:
        text = STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def trim() -> Trimmed:
    """Return the heap's free pages to the system, if the C library can (blocking: a few
    milliseconds for a heap of a few hundred MB, so call it off the event loop)."""
    function = _malloc_trim()
    if function is None:
        return Trimmed(False, None, None, 0.0)
    before = resident_mb()
    start = time.perf_counter()
    function(0)
    seconds = time.perf_counter() - start
    trimmed = Trimmed(True, before, resident_mb(), seconds)
    logger.debug(
        "freed heap memory returned to the system",
        extra={
            "released_mb": round(trimmed.released_mb, 1),
            "rss_mb": trimmed.rss_after_mb,
            "seconds": round(seconds, 4),
        },
    )
    return trimmed
