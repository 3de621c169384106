"""What every benchmark shares: the machine it ran on, the real speech it reads, and how it
reports (a printed table and a JSON file)."""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
import uvicorn
from starlette.applications import Starlette

from biometrics.audio import SAMPLE_RATE
from biometrics.audio.decode import decode_audio
from biometrics.evaluation.report import format_table
from biometrics.soak.service import free_port

LIBRISPEECH_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech"
DEFAULT_SPEECH = LIBRISPEECH_DEV / "test-other-dev"
AUDIO_SUFFIXES = (".flac", ".wav")

Samples = npt.NDArray[np.float32]


class SpeechMissing(Exception):
    """The speech folder is absent or holds no speaker folders."""


class Main(Protocol):
    def __call__(self, argv: list[str] | None = None, /) -> int: ...


def skips_without_speech(main: Main) -> Main:
    """A benchmark's ``main`` that, when its speech folder is missing, says so and exits 2
    instead of failing with a traceback."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except SpeechMissing as error:
            print(f"skipped: {error}", file=sys.stderr)
            return 2

    return run


def machine() -> dict[str, Any]:
    """The box and the torch build the figures came from."""
    model_name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": model_name or platform.processor(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def load_speakers(folder: Path, *, limit: int | None = None) -> dict[str, list[Samples]]:
    """``folder/<speaker>/<utterance>.flac|wav`` decoded by the service's decoder (16 kHz)."""
    if not folder.is_dir():
        raise SpeechMissing(f"no speech folder at {folder}; pass --speech <speaker folders>")
    speakers = {}
    for speaker in sorted(path for path in folder.iterdir() if path.is_dir())[:limit]:
        files = sorted(path for path in speaker.iterdir() if path.suffix in AUDIO_SUFFIXES)
        if files:
            speakers[speaker.name] = [decode_audio(path.read_bytes()) for path in files]
    if not speakers:
        raise SpeechMissing(f"{folder} holds no <speaker>/<file>.flac|wav")
    return speakers


def crops(utterances: Sequence[Samples], seconds: float) -> list[Samples]:
    """Every whole ``seconds`` crop of the utterances, in order."""
    size = int(seconds * SAMPLE_RATE)
    return [
        utterance[start : start + size]
        for utterance in utterances
        for start in range(0, len(utterance) - size + 1, size)
    ]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Right-aligned columns; floats with three significant decimals."""
    cells = [[_cell(value) for value in row] for row in rows]
    print(format_table(cells, [(str(header), ">") for header in headers]))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")


@contextlib.contextmanager
def patched_environ(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` set in this process's environment for the block (the service under test is
    started with it: start_service passes the environment on), the old values back after."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def running_server(app: Starlette) -> Iterator[str]:
    """``app`` on a real uvicorn server on a free loopback port, in a thread of this process,
    until the block ends; its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
