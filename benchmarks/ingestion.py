"""Benchmark: ``AudioData`` frames per second one process ingests as a live call's socket
does, per stage and in all: parsing the JSON message (``StreamParser``), framing and speech
detection (``PcmFramer`` and ``SpeechFilter``, what ``ParticipantStream.feed`` runs per
frame), and keeping the frame (``QualityMeter`` and the decision window's
``SpeechBuffer``). No model runs here: this is the event loop's share of a call.

    python -m benchmarks.ingestion --seconds 5 --out results/ingestion.json

The real-time factor is frames/s over the 50 frames a second one stream sends: how many
concurrent streams one core keeps up with, before any embedding.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    DEFAULT_SPEECH,
    load_speakers,
    machine,
    print_table,
    skips_without_speech,
    write_json,
)
from biometrics.audio import SAMPLE_RATE
from biometrics.audio.buffers import SpeechBuffer
from biometrics.audio.framing import PcmFramer, frames_for
from biometrics.audio.quality import QualityMeter
from biometrics.audio.speech import SpeechDetector, SpeechFilter
from biometrics.config import Settings
from biometrics.simulator import Stream, messages_for, to_pcm
from biometrics.streaming.protocol import AudioFrame, StreamParser

FRAMES_PER_STREAM_SECOND = 50  # ACS sends one 20 ms frame at a time
RAW_ID = "caller"


class Ingest:
    """One participant's per-frame pipeline, stage by stage."""

    def __init__(self, window_frames: int) -> None:
        self.framer = PcmFramer(SAMPLE_RATE)
        self.speech = SpeechFilter(SpeechDetector())
        self.quality = QualityMeter()
        self.window = SpeechBuffer(window_frames)

    def detect(self, frame: AudioFrame) -> list[tuple[np.ndarray, bool]]:
        decided = []
        for piece in self.framer.frames(frame.pcm):
            decided.extend(self.speech.push(piece, silent=frame.silent))
        return decided

    def keep(self, decided: list[tuple[np.ndarray, bool]], frame: AudioFrame) -> None:
        for samples, is_speech in decided:
            if self.window.full:  # a verdict would take the window: start the next one
                self.window.clear()
            self.quality.add(samples, is_speech)
            if is_speech:
                self.window.append(samples, frame.timestamp, frame.timestamp)


def rate(run: Callable[[], int], seconds: float) -> float:
    """Frames per second of ``run`` (one pass over the call, returning its frames), repeated
    until ``seconds`` passed."""
    frames, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or frames == 0:
        frames += run()
    return frames / elapsed


@skips_without_speech
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per stage")
    parser.add_argument("--call-seconds", type=float, default=60.0)
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    speakers = load_speakers(args.speech, limit=1)
    audio = np.concatenate(next(iter(speakers.values())))[: int(args.call_seconds * SAMPLE_RATE)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    metadata, *messages = messages_for([Stream(RAW_ID, to_pcm(audio))], SAMPLE_RATE, start, "b")
    window = frames_for(Settings().stream_max_speech_seconds)

    def parsed() -> tuple[StreamParser, list[AudioFrame]]:
        stream = StreamParser()
        stream.feed_text(metadata)
        return stream, [
            frame for m in messages if isinstance(frame := stream.feed_text(m), AudioFrame)
        ]

    frames = parsed()[1]
    ingest = Ingest(window)
    decisions = [ingest.detect(frame) for frame in frames]

    def parse_only() -> int:
        return len(parsed()[1])

    def detect_only() -> int:
        stage = Ingest(window)
        for frame in frames:
            stage.detect(frame)
        return len(frames)

    def keep_only() -> int:
        stage = Ingest(window)
        for decided, frame in zip(decisions, frames, strict=True):
            stage.keep(decided, frame)
        return len(frames)

    def everything() -> int:
        stream, stage = StreamParser(), Ingest(window)
        stream.feed_text(metadata)
        for message in messages:
            frame = stream.feed_text(message)
            if isinstance(frame, AudioFrame):
                stage.keep(stage.detect(frame), frame)
        return len(messages)

    stages = {
        "parse (StreamParser)": parse_only,
        "frame + detect speech (PcmFramer, SpeechFilter)": detect_only,
        "keep (QualityMeter, SpeechBuffer)": keep_only,
        "all stages": everything,
    }
    rows: list[dict[str, Any]] = []
    for name, run in stages.items():
        frames_per_second = rate(run, args.seconds)
        rows.append(
            {
                "stage": name,
                "frames_per_second": frames_per_second,
                "us_per_frame": 1e6 / frames_per_second,
                "real_time_factor": frames_per_second / FRAMES_PER_STREAM_SECOND,
            }
        )
    speech_share = sum(is_speech for d in decisions for _, is_speech in d) / len(frames)
    result = {
        "benchmark": "ingestion",
        "call_seconds": len(frames) / FRAMES_PER_STREAM_SECOND,
        "speech_share": speech_share,
        "machine": machine(),
        "rows": rows,
        "streams_per_core": rows[-1]["real_time_factor"],
    }
    print(f"one participant, {result['call_seconds']:.0f} s call, {speech_share:.0%} speech\n")
    print_table(
        ["stage", "frames/s", "us/frame", "streams (x real time)"],
        [
            [r["stage"], r["frames_per_second"], r["us_per_frame"], r["real_time_factor"]]
            for r in rows
        ],
    )
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
