"""Benchmark: 3 s crops of real speech embedded per second by the raw SpeechBrain model
in-process (one crop at a time, then batched) against verdicts per second from the service
at saturation over REST (``POST /v1/verify`` from concurrent clients), same model, same run.

    python -m benchmarks.model_vs_service --model random:1024 --seconds 20 \\
        --out results/model_vs_service.json

``--model`` is ``bundled``, ``random:<channels>`` (random weights in the production layout:
cost does not depend on the weights, so ``random:1024`` stands for the full-size ECAPA) or a
model folder. The service is ``biometrics serve`` as a subprocess on SQLite, started as the
soak starts it, with its inference threads set to ``--threads``; the clients run in this
process, so they share the box with it as a caller on the same machine would. Only scored
verdicts (ACCEPT or REJECT) count. Prints a table and the ratios service/raw.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import soundfile
import torch
from speechbrain.inference.speaker import SpeakerRecognition

from benchmarks.common import (
    DEFAULT_SPEECH,
    Samples,
    crops,
    load_speakers,
    machine,
    patched_environ,
    print_table,
    skips_without_speech,
    write_json,
)
from biometrics.audio import SAMPLE_RATE
from biometrics.client import Client, ClientError
from biometrics.embedding.encoder import BUNDLED_FOLDER, BUNDLED_SOURCE
from biometrics.evaluation.run import RANDOM_PREFIX
from biometrics.soak.receiver import WebhookSink
from biometrics.soak.service import start_service
from biometrics.training.folders import ecapa_hyperparams, write_initialised_folder

CROP_SECONDS = 3.0
SCORED = ("ACCEPT", "REJECT")
# Throughput, not accuracy, is measured: short minimums let every 3 s crop be scored and a
# few utterances enroll a speaker.
SERVICE_ENV = {
    "BIOMETRICS_MIN_VERIFY_SPEECH_SECONDS": "1.0",
    "BIOMETRICS_MIN_ENROLL_SPEECH_SECONDS": "8.0",
}


def model_folder(spec: str, workdir: Path) -> tuple[Path, str]:
    """The model's folder (for the raw load) and the source the service is given."""
    if spec == BUNDLED_SOURCE:
        return BUNDLED_FOLDER, BUNDLED_SOURCE
    if spec.startswith(RANDOM_PREFIX):
        channels = int(spec.removeprefix(RANDOM_PREFIX))
        folder = write_initialised_folder(
            workdir / f"ecapa-{channels}", ecapa_hyperparams(channels=channels), seed=0
        )
        return folder, str(folder)
    return Path(spec).resolve(), str(Path(spec).resolve())


def load_raw(folder: Path, workdir: Path) -> SpeakerRecognition:
    """SpeechBrain's own model object for the folder, with none of the service around it
    (its files linked into ``workdir``; the folder's ``pretrained_path`` pointed at itself)."""
    hyperparams = (folder / "hyperparams.yaml").read_text()
    overrides = {"pretrained_path": str(folder)} if "pretrained_path:" in hyperparams else {}
    savedir = workdir / "raw-model"
    model = SpeakerRecognition.from_hparams(str(folder), savedir=str(savedir), overrides=overrides)
    return model.eval()


def clips_per_second(step: Callable[[int], int], seconds: float) -> tuple[float, int]:
    """Call ``step(i)`` (which returns the clips it did) until ``seconds`` passed, after one
    warm-up call; the clips per second and the clips done."""
    step(0)
    done, index, start = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done == 0:
        index += 1
        done += step(index)
    return done / elapsed, done


def raw_rows(
    model: SpeakerRecognition, clips: list[Samples], seconds: float
) -> list[dict[str, Any]]:
    tensors = [torch.from_numpy(clip) for clip in clips]
    rows = []
    for batch in (1, 8, 16):

        @torch.inference_mode()
        def step(index: int, batch: int = batch) -> int:
            start = (index * batch) % len(tensors)
            chosen = [tensors[(start + k) % len(tensors)] for k in range(batch)]
            model.encode_batch(torch.stack(chosen))
            return batch

        rate, done = clips_per_second(step, seconds)
        label = "raw, one clip at a time" if batch == 1 else f"raw, batches of {batch}"
        rows.append({"path": label, "batch": batch, "clips": done, "clips_per_second": rate})
    return rows


def wav(samples: Samples) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


@contextlib.contextmanager
def running_service(source: str, workdir: Path, threads: int) -> Iterator[tuple[str, str]]:
    """``biometrics serve`` on a fresh SQLite database: its URL and an admin key."""
    env = {**SERVICE_ENV, "BIOMETRICS_INFERENCE_THREADS": str(threads)}
    with patched_environ(env), WebhookSink(secrets.token_hex(16)) as webhook:
        service = start_service(workdir, f"sqlite:///{workdir / 'bench.db'}", source, webhook)
        try:
            yield service.url, service.admin_key
        finally:
            service.stop()


def saturate(
    url: str, key: str, trials: list[tuple[str, bytes]], clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` threads posting verifications back to back for ``seconds``."""
    counts = {"scored": 0, "unscored": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(offset: int) -> None:
        with Client(url, api_key=key, timeout=120) as api:
            index = offset
            while time.monotonic() < deadline:
                speaker, audio = trials[index % len(trials)]
                index += clients
                try:
                    verdict = api.verify(audio, speaker, content_type="audio/wav")
                    outcome = "scored" if verdict.decision in SCORED else "unscored"
                except ClientError:
                    outcome = "errors"
                with lock:
                    counts[outcome] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    return {
        "path": f"service, REST, {clients} clients",
        "batch": 1,
        "clips": counts["scored"],
        "clips_per_second": counts["scored"] / elapsed,
        "unscored": counts["unscored"],
        "errors": counts["errors"],
    }


def enroll(url: str, key: str, enrollment: dict[str, list[Samples]]) -> None:
    with Client(url, api_key=key, timeout=300) as api:
        for speaker, utterances in enrollment.items():
            api.create_speaker(speaker)
            for utterance in utterances:
                api.enroll(speaker, wav(utterance), content_type="audio/wav")


@skips_without_speech
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:1024")
    parser.add_argument("--seconds", type=float, default=20.0, help="per measured path")
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    speakers = load_speakers(args.speech)
    # The first half of each speaker's utterances enrolls; crops of the rest are the tests.
    enrollment = {name: files[: max(1, len(files) // 2)] for name, files in speakers.items()}
    tests = {
        name: crops(files[len(files) // 2 :], CROP_SECONDS) for name, files in speakers.items()
    }
    trials = [(name, wav(clip)) for name, clips in tests.items() for clip in clips]
    clips = [clip for speaker_clips in tests.values() for clip in speaker_clips]
    if not clips:
        print(f"skipped: no {CROP_SECONDS:g} s test crops in {args.speech}", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="biometrics-bench-") as tmp:
        workdir = Path(tmp)
        folder, source = model_folder(args.model, workdir)
        rows = raw_rows(load_raw(folder, workdir), clips, args.seconds)
        with running_service(source, workdir, args.threads) as (url, key):
            enroll(url, key, enrollment)
            rows.append(saturate(url, key, trials, args.clients, args.seconds))

    one_at_a_time = rows[0]["clips_per_second"]
    service = rows[-1]["clips_per_second"]
    for row in rows:
        row["audio_seconds_per_second"] = row["clips_per_second"] * CROP_SECONDS
        row["ratio_to_raw_one_at_a_time"] = row["clips_per_second"] / one_at_a_time
    ratios = {f"service/{row['path']}": service / row["clips_per_second"] for row in rows[:-1]}
    result = {
        "benchmark": "model_vs_service",
        "model": args.model,
        "crop_seconds": CROP_SECONDS,
        "seconds_per_path": args.seconds,
        "clients": args.clients,
        "threads": args.threads,
        "machine": machine(),
        "rows": rows,
        "ratios": ratios,
    }
    print(f"model {args.model}, {CROP_SECONDS:g} s crops, torch threads {args.threads}\n")
    print_table(
        ["path", "clips", "clips/s", "audio s/s", "vs raw 1-at-a-time"],
        [
            [
                r["path"],
                r["clips"],
                r["clips_per_second"],
                r["audio_seconds_per_second"],
                r["ratio_to_raw_one_at_a_time"],
            ]
            for r in rows
        ],
    )
    print()
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.3f}")
    if rows[-1]["errors"] or rows[-1]["unscored"]:
        print(f"service: {rows[-1]['unscored']} unscored verdicts, {rows[-1]['errors']} errors")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
