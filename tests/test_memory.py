"""Returning freed heap memory to the system: glibc gives back what was freed; elsewhere
the helper does nothing."""

from __future__ import annotations

import ctypes.util

import pytest

from biometrics import memory

GLIBC = memory.supported()


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trim_gives_back_freed_heap_memory():
    # Blocks under the mmap threshold come from the heap, and each is followed by a small
    # one that is kept: freed, they are holes free() cannot hand back (only the heap's top
    # is), as a call's buffers are among what the service keeps.
    pairs = [(bytearray(b"x" * 16_000), bytearray(64)) for _ in range(12_500)]  # ~200 MB
    kept = [small for _, small in pairs]
    held = memory.resident_mb()
    del pairs
    trimmed = memory.trim()
    assert trimmed.supported
    assert held is not None and trimmed.rss_after_mb is not None
    assert trimmed.released_mb > 50  # of the ~200 MB freed
    assert trimmed.rss_after_mb < held - 50
    assert len(kept) == 12_500


def test_trim_is_a_no_op_without_glibc(monkeypatch):
    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    try:
        trimmed = memory.trim()
    finally:
        memory._malloc_trim.cache_clear()
    assert not trimmed.supported
    assert trimmed.released_mb == 0.0
    assert trimmed.rss_before_mb is None


def test_resident_size_is_read_from_proc():
    rss = memory.resident_mb()
    assert rss is None or rss > 1
