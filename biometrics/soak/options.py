"""What a soak is asked to do, and the error for a soak that cannot run at all."""

from __future__ import annotations

import dataclasses
from pathlib import Path

FAULT_KINDS = ("disconnect", "malformed", "database", "webhook")


class SoakError(Exception):
    """The soak cannot run (no speech, a service that does not start); nothing was judged."""


@dataclasses.dataclass(frozen=True)
class SoakOptions:
    speech: Path  # LibriSpeech excerpts (test-other-dev used) or one subfolder per speaker
    calls: int = 20  # at once, in each wave
    minutes: float = 10.0
    speed: float = 1.0  # 1: real-time pacing
    speakers: int = 5
    call_seconds: float = 16.0  # of audio per participant: several verdicts (3, 5, 7, 9, 10 s)
    model: str = "bundled"
    postgres_url: str | None = None  # a server and a role with CREATEDB; SQLite if None
    pg_restart_command: str | None = None  # else the database fault switches off a proxy
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    database_outage_seconds: float = 5.0
    webhook_outage_seconds: float = 8.0
    workdir: Path | None = None  # default: a temporary folder, removed afterwards
