from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.embedding.folder import MODEL_FILES
from biometrics.errors import ModelLoadError
from biometrics.training.folders import ecapa_hyperparams, write_initialised_folder
from tests.voices import synthetic_speech


def test_folder_in_the_production_layout_loads_offline(model_folder: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in model_folder.iterdir()) == sorted(MODEL_FILES)
    # The folder keeps naming the hub, as a copy downloaded from it does.
    assert (
        "pretrained_path: speechbrain/spkrec-ecapa-voxceleb"
        in (model_folder / "hyperparams.yaml").read_text()
    )
    encoder = load_encoder(str(model_folder), tmp_path / "cache")
    expected = hashlib.sha256((model_folder / "embedding_model.ckpt").read_bytes()).hexdigest()
    assert encoder.identity.checkpoint_sha256 == expected
    assert encoder.identity.source == str(model_folder)
    assert not (tmp_path / "cache").exists()  # read in place, nothing fetched


def test_embeddings_are_unit_length_and_deterministic(encoder: SpeakerEncoder) -> None:
    waves = [synthetic_speech(2.0, seed=1), synthetic_speech(3.5, seed=2)]
    first, again = encoder.embed(waves), encoder.embed(waves)
    assert first.shape == (2, encoder.dimension) == (2, 192)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.allclose(first, again, atol=1e-5)


def test_a_folder_missing_files_is_refused_with_what_is_missing(
    model_folder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_folder, broken)
    (broken / "classifier.ckpt").unlink()
    with pytest.raises(ModelLoadError, match=r"lacks classifier\.ckpt"):
        load_encoder(str(broken), tmp_path / "cache")


def test_a_corrupt_checkpoint_is_refused(model_folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "corrupt"
    shutil.copytree(model_folder, broken)
    (broken / "embedding_model.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="could not load the model folder"):
        load_encoder(str(broken), tmp_path / "cache")


def test_an_unreachable_hub_source_is_refused_with_a_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as refused:
        load_encoder("speechbrain/spkrec-ecapa-voxceleb", tmp_path / "cache")
    assert "speechbrain/spkrec-ecapa-voxceleb" in refused.value.detail
    assert "BIOMETRICS_MODEL_SOURCE=/path/to/that/folder" in refused.value.detail


def test_a_missing_folder_is_not_mistaken_for_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="neither an existing folder"):
        load_encoder(str(tmp_path / "nowhere" / "model"), tmp_path / "cache")


def test_different_weights_give_a_different_identity(model_folder: Path, tmp_path: Path) -> None:
    other = write_initialised_folder(
        tmp_path / "other", ecapa_hyperparams(channels=64, n_classes=8), seed=1
    )
    first = load_encoder(str(model_folder), tmp_path / "cache").identity
    second = load_encoder(str(other), tmp_path / "cache").identity
    assert not first.compatible_with(second.checkpoint_sha256)


def test_production_shaped_folder_loads_with_production_shapes(
    production_shaped_folder: Path, tmp_path: Path
) -> None:
    encoder = load_encoder(str(production_shaped_folder), tmp_path / "cache")
    modules = encoder._model.mods
    assert modules.embedding_model.blocks[0].conv.conv.out_channels == 1024
    assert modules.embedding_model.mfa.conv.conv.out_channels == 3072
    assert modules.classifier.weight.shape == (7205, 192)
    assert encoder.embed([synthetic_speech(1.0)]).shape == (1, 192)
