"""Benchmark: the cost of speech detection and of embedding one crop, per model and
crop length, as ratios to the first model named (the baseline) in the same run.

    python scripts/benchmark_embedding.py --model resemblyzer --model bundled \\
        --model random:1024 --out results/

Models are what ``scripts/evaluate.py`` takes: a model folder or hub id, ``bundled``,
``resemblyzer`` (train extras) or ``random:<channels>`` (cost does not depend on
the weights, so ``random:1024`` stands for the production model's shape), each
optionally in a service precision (``bundled@onnx``, as with
``BIOMETRICS_INFERENCE_PRECISION=onnx``; the bench extras). Each
crop is embedded alone, as a live call does. Prints a table and, with ``--out``,
writes ``benchmark_embedding.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from biometrics.audio import SAMPLE_RATE, SpeechDetector
from biometrics.config import Settings
from biometrics.evaluation.run import make_embedder


def timed(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``function`` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="repeatable; the first is the baseline")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    models = args.model or ["random:1024", "random:256"]

    rng = np.random.default_rng(0)
    crops = {
        seconds: (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
        for seconds in args.seconds
    }
    rows = []
    detector = SpeechDetector()
    for seconds, crop in crops.items():
        ms = timed(functools.partial(detector.detect, crop), args.repeats)
        rows.append({"stage": "speech detection", "model": "-", "seconds": seconds, "ms": ms})
    for spec in models:
        embedder = make_embedder(spec, cache_dir=settings.model_cache_dir, threads=args.threads)
        torch.set_num_threads(args.threads)
        for seconds, crop in crops.items():
            ms = timed(functools.partial(embedder.embed, [crop]), args.repeats)
            rows.append({"stage": "embedding", "model": spec, "seconds": seconds, "ms": ms})
    baseline = {
        row["seconds"]: row["ms"]
        for row in rows
        if row["stage"] == "embedding" and row["model"] == models[0]
    }
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    print(f"baseline: {models[0]}\n")
    print(f"{'stage':<18}{'model':<22}{'audio s':>8}{'ms':>10}{'x real time':>13}{'vs base':>9}")
    for row in rows:
        row["real_time_factor"] = row["ms"] / 1000 / row["seconds"]
        row["ratio_to_baseline"] = row["ms"] / baseline[row["seconds"]]
        print(
            f"{row['stage']:<18}{row['model']:<22}{row['seconds']:>8.1f}{row['ms']:>10.1f}"
            f"{row['real_time_factor']:>13.4f}{row['ratio_to_baseline']:>9.3f}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory {peak_mb:.0f} MB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {
            "baseline": models[0],
            "threads": args.threads,
            "torch": torch.__version__,
            "peak_rss_mb": peak_mb,
            "rows": rows,
        }
        (args.out / "benchmark_embedding.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
