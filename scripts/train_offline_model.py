"""Train the bundled offline model: distil Resemblyzer's GE2E encoder into
SpeechBrain's ECAPA-TDNN on LibriSpeech, then write a model folder in the
spkrec-ecapa-voxceleb layout.

    pip install -e '.[train]' && pip install --no-deps resemblyzer==0.1.4
    python scripts/train_offline_model.py --data ../shared/data/librispeech \\
        --workdir ~/biometrics-training --out biometrics/models/ecapa-distilled

Seeded and resumable: the work folder keeps a checkpoint, so running the same
command again continues where it stopped. Held-out train-clean-5 speakers are
never trained on; the development EER on them is logged as training goes.
test-other-dev is never used here. A later stage starts from an exported folder
(``--init-from FOLDER``); ``--average-last N`` exports the mean of the last N
checkpoints; ``--device cuda`` trains on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from biometrics.evaluation.protocol import build_protocol, find_speakers, load_speech
from biometrics.logs import configure_logging
from biometrics.training.curve import plot_training_curve
from biometrics.training.data import HELD_OUT_SPEAKERS, Augmentation, CropSampler, load_voices
from biometrics.training.distill import DistillConfig, Distiller
from biometrics.training.teacher import ResemblyzerTeacher

SPEEDS = (0.9, 1.0, 1.1)
CROP_SECONDS = (2.0, 3.0)
# The development trials stay the same whatever the training seed, so that the EERs of
# runs and stages started with other seeds compare.
DEVELOPMENT_SEED = 1234

logger = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    defaults = DistillConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the librispeech folder")
    parser.add_argument("--workdir", type=Path, required=True, help="checkpoint and log folder")
    parser.add_argument("--out", type=Path, help="write the model folder here when done")
    for field in dataclasses.fields(DistillConfig):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(getattr(defaults, field.name)),
            default=getattr(defaults, field.name),
        )
    args = parser.parse_args(argv)
    configure_logging("INFO", "console")
    config = DistillConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(DistillConfig)}
    )

    training_folders = [args.data / "train-clean-100", args.data / "train-clean-5"]
    voices = load_voices(training_folders, exclude=set(HELD_OUT_SPEAKERS), speeds=SPEEDS)
    logger.info("training voices", extra={"voices": len(voices), "speakers": len(voices) // 3})
    sampler = CropSampler(voices, config.batch_size, CROP_SECONDS, Augmentation(), config.seed)

    held_out = {
        speaker: paths
        for speaker, paths in find_speakers(args.data / "train-clean-5").items()
        if speaker in HELD_OUT_SPEAKERS
    }
    development = build_protocol(
        load_speech(held_out),
        enroll_seconds=20.0,
        test_seconds=3.0,
        max_tests_per_speaker=40,
        seed=DEVELOPMENT_SEED,
    )
    distiller = Distiller(
        config, sampler, ResemblyzerTeacher(config.device), args.workdir, development
    )
    distiller.run()
    if args.out:
        distiller.export(args.out)
        plot_training_curve(distiller.log_path, args.out / "training_curve.png")
        logger.info("model folder written", extra={"folder": str(args.out)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
