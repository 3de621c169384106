"""Regenerate docs/accuracy.md's calibration honesty tables and pictures, and the
calibration shipped with the bundled model:

    python scripts/calibration_report.py --data ../shared/data/librispeech \
        --out docs/results/calibration --ship biometrics/models/ecapa-distilled

See biometrics/evaluation/honesty_report.py for the protocol. Embeddings are cached
(--cache), so a rerun after the first only refits and redraws.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from biometrics.evaluation import honesty_report
from biometrics.evaluation.arguments import configured_embedder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the librispeech folder")
    parser.add_argument("--model", help="default: BIOMETRICS_MODEL_SOURCE")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "biometrics-calibration"
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ship", type=Path, help="model folder to write the calibration into")
    args = parser.parse_args(argv)
    embedder = configured_embedder(args.model, args.seed)
    settings = honesty_report.StudySettings(
        data=args.data, cache=args.cache, folds=args.folds, seed=args.seed
    )
    report = honesty_report.run(embedder, settings, args.out)
    print(honesty_report.markdown(report))
    if args.ship:
        print(f"wrote {honesty_report.ship(report, args.ship, settings)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
