"""The spkrec-ecapa-voxceleb model folder layout, and writing folders in it.

A folder is data: ``hyperparams.yaml`` says how to build the modules and the
checkpoints hold their weights. Writing one from a hyperparams text and a set
of modules (trained, or freshly initialised) is how tests and training produce
folders that load through exactly the path a production model takes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml

HYPERPARAMS = "hyperparams.yaml"
EMBEDDING_CHECKPOINT = "embedding_model.ckpt"
MODEL_FILES = (
    HYPERPARAMS,
    EMBEDDING_CHECKPOINT,
    "mean_var_norm_emb.ckpt",
    "classifier.ckpt",
    "label_encoder.txt",
)


def ecapa_hyperparams(
    channels: int = 1024, lin_neurons: int = 192, n_classes: int = 7205, n_mels: int = 80
) -> str:
    """A hyperparams.yaml in the production model's exact shape, for another size."""
    return _HYPERPARAMS_TEMPLATE.format(
        n_mels=n_mels,
        n_classes=n_classes,
        channels=channels,
        last_channels=3 * channels,
        lin_neurons=lin_neurons,
    )


def missing_files(folder: Path) -> list[str]:
    return [name for name in MODEL_FILES if not (folder / name).is_file()]


def write_initialised_folder(
    folder: Path,
    hyperparams: str,
    *,
    seed: int = 0,
    label_encoder: str | None = None,
    mean_var_norm_emb: bytes | None = None,
) -> Path:
    """Write a folder whose modules hold fresh (random) weights of the right shapes.

    ``label_encoder`` and ``mean_var_norm_emb`` default to ones generated for
    the classifier's size; pass a published model's files to keep them as they are.
    """
    torch.manual_seed(seed)
    modules = load_hyperpyyaml(hyperparams)
    write_model_folder(folder, hyperparams, modules)
    if mean_var_norm_emb is not None:
        (folder / "mean_var_norm_emb.ckpt").write_bytes(mean_var_norm_emb)
    if label_encoder is not None:
        (folder / "label_encoder.txt").write_text(label_encoder, encoding="utf-8")
    return folder


def write_model_folder(
    folder: Path,
    hyperparams: str,
    modules: dict,
    *,
    labels: list[str] | None = None,
    half: bool = False,
) -> Path:
    """Save the modules built from ``hyperparams`` (trained or not) as a model folder.

    ``half`` stores floating-point weights as float16, halving the folder;
    loading casts them back to the modules' float32 parameters.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HYPERPARAMS).write_text(hyperparams, encoding="utf-8")
    torch.save(_state(modules["embedding_model"], half), folder / EMBEDDING_CHECKPOINT)
    torch.save(_state(modules["classifier"], half), folder / "classifier.ckpt")
    modules["mean_var_norm_emb"]._save(folder / "mean_var_norm_emb.ckpt")
    encoder = modules["label_encoder"]
    if labels is None:
        out_neurons = modules["classifier"].weight.shape[0]
        labels = [f"speaker{index:05d}" for index in range(out_neurons)]
    encoder.update_from_iterable(labels)
    encoder.save(folder / "label_encoder.txt")
    return folder


def _state(module: torch.nn.Module, half: bool) -> dict[str, torch.Tensor]:
    return {
        name: value.half() if half and value.is_floating_point() else value
        for name, value in module.state_dict().items()
    }


_HYPERPARAMS_TEMPLATE = """\
# ############################################################################
# Model: ECAPA-TDNN for speaker verification
# ############################################################################

# Feature parameters
n_mels: {n_mels}

# Pretrain folder (HuggingFace)
pretrained_path: speechbrain/spkrec-ecapa-voxceleb

# Output parameters
out_n_neurons: {n_classes}

# Model params
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [{channels}, {channels}, {channels}, {channels}, {last_channels}]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: {lin_neurons}

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {lin_neurons}
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""
