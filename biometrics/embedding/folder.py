"""The spkrec-ecapa-voxceleb model folder layout: the files a loader reads.

A folder is data: ``hyperparams.yaml`` says how to build the modules and the
checkpoints hold their weights. Writing folders belongs to
:mod:`biometrics.training.folders`; the service only reads them.
"""

from __future__ import annotations

from pathlib import Path

HYPERPARAMS = "hyperparams.yaml"
EMBEDDING_CHECKPOINT = "embedding_model.ckpt"
NORMALIZER_CHECKPOINT = "mean_var_norm_emb.ckpt"
CLASSIFIER_CHECKPOINT = "classifier.ckpt"
LABEL_ENCODER = "label_encoder.txt"
MODEL_FILES = (
    HYPERPARAMS,
    EMBEDDING_CHECKPOINT,
    NORMALIZER_CHECKPOINT,
    CLASSIFIER_CHECKPOINT,
    LABEL_ENCODER,
)


def missing_files(folder: Path) -> list[str]:
    return [name for name in MODEL_FILES if not (folder / name).is_file()]
