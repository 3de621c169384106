"""Writing model folders in the spkrec-ecapa-voxceleb layout.

Writing one from a hyperparams text and a set of modules (trained, or freshly
initialised) is how tests, the evaluation harness and training produce folders
that load through exactly the path a production model takes. Only torch and
HyperPyYAML, which the service itself depends on, are needed here: none of the
``train`` extras.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from hyperpyyaml import load_hyperpyyaml

from biometrics.embedding.folder import (
    CLASSIFIER_CHECKPOINT,
    EMBEDDING_CHECKPOINT,
    HYPERPARAMS,
    LABEL_ENCODER,
    NORMALIZER_CHECKPOINT,
)

# The production model's hyperparams.yaml with its sizes left as format fields.
_TEMPLATE = resources.files("biometrics.training") / "ecapa_hyperparams.yaml.in"

# What HyperPyYAML builds from a hyperparams text: SpeechBrain objects by name, which
# SpeechBrain (shipping no type information) only lets us know as Any.
Modules = Mapping[str, Any]


def ecapa_hyperparams(
    channels: int = 1024, lin_neurons: int = 192, n_classes: int = 7205, n_mels: int = 80
) -> str:
    """A hyperparams.yaml in the production model's exact shape, for another size."""
    return _TEMPLATE.read_text(encoding="utf-8").format(
        n_mels=n_mels,
        n_classes=n_classes,
        channels=channels,
        last_channels=3 * channels,
        lin_neurons=lin_neurons,
    )


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
    modules: Modules = load_hyperpyyaml(hyperparams)
    write_model_folder(folder, hyperparams, modules)
    if mean_var_norm_emb is not None:
        (folder / NORMALIZER_CHECKPOINT).write_bytes(mean_var_norm_emb)
    if label_encoder is not None:
        (folder / LABEL_ENCODER).write_text(label_encoder, encoding="utf-8")
    return folder


def write_model_folder(
    folder: Path,
    hyperparams: str,
    modules: Modules,
    *,
    labels: list[str] | None = None,
    half: bool = False,
) -> Path:
    """Save the modules built from ``hyperparams`` (trained or not) as a model folder.

    ``half`` stores floating-point weights as float16, halving the folder;
    loading casts them back to the modules' float32 parameters.
    """
    embedding_model: torch.nn.Module = modules["embedding_model"]
    classifier: torch.nn.Module = modules["classifier"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HYPERPARAMS).write_text(hyperparams, encoding="utf-8")
    torch.save(_state(embedding_model, half), folder / EMBEDDING_CHECKPOINT)
    torch.save(_state(classifier, half), folder / CLASSIFIER_CHECKPOINT)
    modules["mean_var_norm_emb"]._save(folder / NORMALIZER_CHECKPOINT)
    encoder = modules["label_encoder"]
    if labels is None:
        out_neurons = classifier.get_parameter("weight").shape[0]
        labels = [f"speaker{index:05d}" for index in range(out_neurons)]
    encoder.update_from_iterable(labels)
    encoder.save(folder / LABEL_ENCODER)
    return folder


def _state(module: torch.nn.Module, half: bool) -> dict[str, torch.Tensor]:
    return {
        name: value.half() if half and value.is_floating_point() else value
        for name, value in module.state_dict().items()
    }
