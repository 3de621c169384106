"""Benchmark: the cost of speech detection and of embedding, per crop length and model size.

Models are ECAPA-TDNNs in the spkrec-ecapa-voxceleb layout with fresh weights
(the cost does not depend on the weights): the production shape (1024
channels) is the baseline, and smaller widths are reported as ratios to it.
Prints a table and, with ``--out``, writes ``benchmark_embedding.json``.

    python scripts/benchmark_embedding.py --out results/
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from biometrics.audio import SAMPLE_RATE, SpeechDetector
from biometrics.embedding import load_encoder
from biometrics.embedding.folder import ecapa_hyperparams, write_initialised_folder


def timed(function, repeats: int) -> float:
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
    parser.add_argument("--channels", type=int, nargs="+", default=[1024, 512, 256])
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    crops = {
        s: (0.1 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32)
        for s in args.seconds
    }
    rows = []
    detector = SpeechDetector()
    for seconds, crop in crops.items():
        ms = timed(lambda crop=crop: detector.detect(crop), args.repeats)
        rows.append({"stage": "speech detection", "channels": None, "seconds": seconds, "ms": ms})
    with tempfile.TemporaryDirectory() as workdir:
        for channels in args.channels:
            folder = write_initialised_folder(
                Path(workdir) / f"ecapa-{channels}", ecapa_hyperparams(channels=channels)
            )
            encoder = load_encoder(str(folder), Path(workdir) / "cache", threads=args.threads)
            for seconds, crop in crops.items():
                ms = timed(lambda crop=crop, encoder=encoder: encoder.embed([crop]), args.repeats)
                rows.append(
                    {"stage": "embedding", "channels": channels, "seconds": seconds, "ms": ms}
                )
    baseline = {
        row["seconds"]: row["ms"]
        for row in rows
        if row["stage"] == "embedding" and row["channels"] == args.channels[0]
    }
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}\n")
    print(f"{'stage':<18}{'channels':>9}{'audio s':>9}{'ms':>10}{'x real time':>13}{'vs base':>9}")
    for row in rows:
        row["real_time_factor"] = row["ms"] / 1000 / row["seconds"]
        row["ratio_to_baseline"] = row["ms"] / baseline[row["seconds"]]
        print(
            f"{row['stage']:<18}{row['channels'] or '-':>9}{row['seconds']:>9.1f}"
            f"{row['ms']:>10.1f}{row['real_time_factor']:>13.4f}{row['ratio_to_baseline']:>9.3f}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory {peak_mb:.0f} MB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {
            "baseline": f"ECAPA-TDNN, {args.channels[0]} channels",
            "threads": args.threads,
            "torch": torch.__version__,
            "peak_rss_mb": peak_mb,
            "rows": rows,
        }
        (args.out / "benchmark_embedding.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
