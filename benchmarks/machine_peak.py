"""Benchmark: this box's matmul GFLOP/s with torch (fp32, and bf16 where the CPU runs it),
large square matmuls of a few sizes at the threads set, so that embedding throughput can be
read as a fraction of what the machine can do.

    python -m benchmarks.machine_peak --seconds 2 --out results/machine_peak.json

A square n x n matmul is 2 n^3 floating-point operations. The full-size ECAPA costs about
3.75 GFLOP per second of audio, so ``peak / 3.75`` is the most audio seconds per second the
box could embed were the model pure matmul at peak.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine, print_table, write_json

ECAPA_GFLOP_PER_AUDIO_SECOND = 3.75
SIZES = (512, 1024, 2048)


def gflops(size: int, dtype: torch.dtype, seconds: float) -> float:
    """Sustained GFLOP/s of ``size`` square matmuls in ``dtype`` over ``seconds``."""
    left = torch.randn(size, size).to(dtype)
    right = torch.randn(size, size).to(dtype)
    torch.mm(left, right)  # warm-up: allocation and kernel choice
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or runs == 0:
        torch.mm(left, right)
        runs += 1
    return 2 * size**3 * runs / elapsed / 1e9


def dtypes() -> list[torch.dtype]:
    """fp32, and bf16 if a matmul in it runs at all on this CPU."""
    chosen = [torch.float32]
    try:
        torch.mm(torch.ones(2, 2, dtype=torch.bfloat16), torch.ones(2, 2, dtype=torch.bfloat16))
        chosen.append(torch.bfloat16)
    except RuntimeError:
        pass
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per size and type")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = [
        {
            "dtype": str(dtype).removeprefix("torch."),
            "size": size,
            "gflops": gflops(size, dtype, args.seconds),
        }
        for dtype in dtypes()
        for size in args.sizes
    ]
    peak = {
        row["dtype"]: max(r["gflops"] for r in rows if r["dtype"] == row["dtype"]) for row in rows
    }
    result = {
        "benchmark": "machine_peak",
        "threads": args.threads,
        "machine": machine(),
        "rows": rows,
        "peak_gflops": peak,
        "ecapa_gflop_per_audio_second": ECAPA_GFLOP_PER_AUDIO_SECOND,
        "ecapa_audio_seconds_per_second_at_peak": {
            dtype: value / ECAPA_GFLOP_PER_AUDIO_SECOND for dtype, value in peak.items()
        },
    }
    print(f"torch {torch.__version__}, {args.threads} threads\n")
    print_table(["dtype", "size", "GFLOP/s"], [[r["dtype"], r["size"], r["gflops"]] for r in rows])
    print()
    for dtype, value in peak.items():
        print(
            f"peak {dtype}: {value:.1f} GFLOP/s = "
            f"{value / ECAPA_GFLOP_PER_AUDIO_SECOND:.1f} s of full-size ECAPA audio per second"
        )
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
