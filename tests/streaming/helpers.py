"""What the socket-level tests share: short live-call settings, the call simulator's own
frame functions, and readers for server-sent events."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np

from biometrics import simulator
from biometrics.config import Settings
from tests.voices import synthetic_speech

START = datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)
VOICES = {
    "a": {"pitch_hz": 110.0, "formants": (650.0, 1100.0, 2400.0)},
    "b": {"pitch_hz": 210.0, "formants": (850.0, 1900.0, 3000.0)},
    "c": {"pitch_hz": 150.0, "formants": (500.0, 1500.0, 2600.0)},
    "d": {"pitch_hz": 95.0, "formants": (750.0, 1300.0, 2300.0)},
}


def live_settings(settings: Settings, **changes: Any) -> Settings:
    """Verdicts at 1, 2 and 3 s of speech (final), so that a call of a few seconds shows
    the whole schedule; enrollment after 4 s; a short metadata timeout."""
    return dataclasses.replace(
        settings,
        min_verify_speech_seconds=1.0,
        stream_step_seconds=1.0,
        stream_max_speech_seconds=3.0,
        stream_metadata_timeout_seconds=1.0,
        stream_idle_timeout_seconds=1.0,
        stream_max_message_bytes=16 * 1024,
        min_enroll_speech_seconds=4.0,
        **changes,
    )


def voice(seconds: float, name: str = "a", seed: int = 0, rate: int = 16_000) -> np.ndarray:
    return synthetic_speech(seconds, seed=seed, rate=rate, **VOICES[name])


def call_messages(
    participants: dict[str | None, np.ndarray], rate: int = 16_000, subscription: str = "sub-1"
) -> list[str]:
    """The whole call as the simulator sends it: metadata, then interleaved frames."""
    streams = [
        simulator.Stream(raw_id, simulator.to_pcm(samples))
        for raw_id, samples in participants.items()
    ]
    return list(simulator.messages_for(streams, rate, START, subscription))


def parse_sse(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of each event in a text/event-stream body."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append(
                (fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"]))
            )
    return events


def assert_follows_schedule(
    verdicts: list[dict[str, Any]], minimum: float = 1.0, step: float = 1.0, maximum: float = 3.0
) -> None:
    """Scored verdicts come from ``minimum`` seconds of speech, at least ``step`` apart (later
    when the model was busy: each then covers all the speech so far), and the one on
    ``maximum`` seconds is the final one."""
    scored = [v for v in verdicts if v["decision"] in ("ACCEPT", "REJECT")]
    seconds = [v["speech_seconds"] for v in scored]
    assert seconds and seconds[0] >= minimum, seconds
    for earlier, later in itertools.pairwise(seconds):
        assert later >= min(earlier + step, maximum) - 1e-6, seconds
    assert seconds[-1] == maximum and scored[-1]["final"], seconds
    assert not any(v["final"] for v in verdicts[:-1])
