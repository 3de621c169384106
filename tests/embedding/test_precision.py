"""Each offered inference precision runs the bundled model and keeps its voiceprints: the
embeddings of speech-like audio stay within cosine 0.999 of fp32's, so the model's
identity (and every stored voiceprint) is unchanged by the choice."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from biometrics.config import Settings
from biometrics.embedding import SpeakerEncoder, load_encoder
from biometrics.embedding.precision import PRECISIONS
from biometrics.errors import ConfigError, ModelLoadError
from tests.recordings import ALICE, BOB, speech

FIDELITY = 0.999  # the cosine to fp32 under which voiceprints would need re-enrolling


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def fp32(cache: Path) -> SpeakerEncoder:
    return load_encoder("bundled", cache, threads=1)


def offered(precision: str) -> object:
    needs = {"onnx": "onnxruntime"}.get(precision)
    missing = needs is not None and importlib.util.find_spec(needs) is None
    return pytest.param(
        precision, marks=pytest.mark.skipif(missing, reason=f"{needs} is not installed")
    )


@pytest.mark.parametrize("precision", [offered(p) for p in PRECISIONS if p != "fp32"])
def test_each_precision_keeps_embeddings_and_identity_of_fp32(
    precision: str, fp32: SpeakerEncoder, cache: Path
) -> None:
    # Two voices, three lengths in one padded batch: the padding mask must survive too.
    waves = [speech(ALICE, seed=1, seconds=3.0), speech(BOB, seed=2, seconds=2.0)]
    waves.append(speech(ALICE, seed=3, seconds=1.5))
    encoder = load_encoder("bundled", cache, threads=1, precision=precision)
    # Padding changes fp32's own embeddings a little, so each is compared like for like.
    batch, batch_reference = encoder.embed(waves), fp32.embed(waves)
    alone = np.concatenate([encoder.embed([wave]) for wave in waves])
    alone_reference = np.concatenate([fp32.embed([wave]) for wave in waves])
    assert np.all(np.sum(batch * batch_reference, axis=1) >= FIDELITY)
    assert np.all(np.sum(alone * alone_reference, axis=1) >= FIDELITY)
    assert encoder.identity == fp32.identity
    assert encoder.dimension == fp32.dimension


def test_an_unknown_precision_is_refused_naming_the_choices(cache: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"unknown inference precision 'int8'.*fp32, bf16"):
        load_encoder("bundled", cache, precision="int8")
    with pytest.raises(ConfigError, match="INFERENCE_PRECISION must be one of fp32"):
        Settings.from_env({"BIOMETRICS_INFERENCE_PRECISION": "fp16"})
    assert Settings.from_env({"BIOMETRICS_INFERENCE_PRECISION": "bf16"}).inference_precision == (
        "bf16"
    )
