"""Writing model folders: the shapes the service loads, without the train extras."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from hyperpyyaml import load_hyperpyyaml

from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.embedding.encoder import BUNDLED_FOLDER
from biometrics.embedding.folder import EMBEDDING_CHECKPOINT, HYPERPARAMS, MODEL_FILES
from biometrics.training.folders import ecapa_hyperparams, write_model_folder
from tests.conftest import PRODUCTION_LAYOUT
from tests.voices import synthetic_speech

REPOSITORY = Path(__file__).resolve().parents[2]


def test_the_hyperparams_template_is_the_one_the_bundled_model_was_trained_from() -> None:
    bundled = (BUNDLED_FOLDER / HYPERPARAMS).read_text(encoding="utf-8")
    assert ecapa_hyperparams(channels=256, n_classes=564) == bundled  # its 564 training voices


def test_writing_a_folder_needs_none_of_the_train_extras(tmp_path: Path) -> None:
    """Tests and the evaluation harness write folders on an install without them."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        for extra in ("librosa", "resemblyzer", "matplotlib"):
            sys.modules[extra] = None  # importing it now raises ImportError
        from biometrics.training.folders import ecapa_hyperparams, write_initialised_folder
        hyperparams = ecapa_hyperparams(channels=16, n_classes=2)
        write_initialised_folder(Path({str(tmp_path / "model")!r}), hyperparams)
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, check=True, timeout=120)
    assert sorted(path.name for path in (tmp_path / "model").iterdir()) == sorted(MODEL_FILES)


def test_an_initialised_folder_keeps_the_published_files(production_shaped_folder: Path) -> None:
    for name in ("hyperparams.yaml", "label_encoder.txt", "mean_var_norm_emb.ckpt"):
        published = (PRODUCTION_LAYOUT / name).read_bytes()
        assert (production_shaped_folder / name).read_bytes() == published


def test_a_half_precision_folder_is_smaller_and_embeds_alike(tmp_path: Path) -> None:
    hyperparams = ecapa_hyperparams(channels=32, n_classes=4)
    torch.manual_seed(0)
    modules = load_hyperpyyaml(hyperparams)
    full = write_model_folder(tmp_path / "full", hyperparams, modules)
    half = write_model_folder(tmp_path / "half", hyperparams, modules, half=True)
    size = {folder: (folder / EMBEDDING_CHECKPOINT).stat().st_size for folder in (full, half)}
    assert size[half] < 0.6 * size[full]

    def encoder(folder: Path) -> SpeakerEncoder:
        return load_encoder(str(folder), tmp_path / "cache")

    waves = [synthetic_speech(2.0, seed=1)]
    assert np.allclose(encoder(full).embed(waves), encoder(half).embed(waves), atol=1e-2)
