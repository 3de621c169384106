"""The command-line arguments every harness script shares, and what they select:
the speech to measure on and the models to measure."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from biometrics.config import Settings
from biometrics.evaluation.protocol import SpeakerSpeech, find_speakers, load_speech
from biometrics.evaluation.run import Embedder, make_embedder


def add_harness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="folders of speech (several: their speakers together, e.g. every held-out set)",
    )
    parser.add_argument(
        "--model",
        action="append",
        help="'bundled', HF id or model folder, 'resemblyzer', or 'random:<channels>'; "
        "'<model>@onnx' or '@bf16' runs it in that precision "
        "(repeatable; default: BIOMETRICS_MODEL_SOURCE)",
    )
    parser.add_argument("--speakers", nargs="+", help="only these speaker ids (default: all)")
    parser.add_argument("--enroll-seconds", type=float, default=20.0)
    parser.add_argument("--max-nontargets", type=int, help="seeded sample (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="default: BIOMETRICS_INFERENCE_THREADS")


class UsageError(Exception):
    """What the user asked for cannot be measured; the message says why."""


def data_label(args: argparse.Namespace) -> str:
    """The folders measured on, as the results files name them."""
    return " ".join(str(folder) for folder in args.data)


def selected_speech(args: argparse.Namespace) -> list[SpeakerSpeech]:
    speakers: dict[str, list[Path]] = {}
    for folder in args.data:
        if not folder.is_dir():
            raise UsageError(f"no such folder: {folder}")
        for speaker, paths in find_speakers(folder).items():
            speakers.setdefault(speaker, []).extend(paths)
    if args.speakers:
        speakers = {
            speaker: paths for speaker, paths in speakers.items() if speaker in args.speakers
        }
    speech = load_speech(speakers)
    if not speech:
        raise UsageError(f"no audio files in {data_label(args)}")
    return speech


def selected_embedders(args: argparse.Namespace, settings: Settings) -> Iterator[Embedder]:
    """The models named, loaded one at a time so that only one is in memory."""
    threads = args.threads or settings.inference_threads
    for spec in args.model or [settings.model_source]:
        yield make_embedder(
            spec, cache_dir=settings.model_cache_dir, threads=threads, seed=args.seed
        )


def configured_embedder(model: str | None, seed: int) -> Embedder:
    """One model by its spec, else the configured one, with the configured cache and threads."""
    settings = Settings.from_env()
    return make_embedder(
        model or settings.model_source,
        cache_dir=settings.model_cache_dir,
        threads=settings.inference_threads,
        seed=seed,
    )
