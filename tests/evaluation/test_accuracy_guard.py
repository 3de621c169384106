"""Regression guard: the bundled model, run through the service's own decoding, speech
detection, embedding and pooling, still separates real speakers as well as recorded.

The recorded figure (``docs/results/calibration/guard.json``) is written by
``scripts/calibration_report.py`` on the same small, seeded trial list: six LibriSpeech
readers the model never trained on, 3 s tests. A model, decoder or detector change that
makes the EER leave its recorded 95 % interval fails here; regenerate the docs when a
change is meant to move it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biometrics.embedding import SpeakerEncoder
from biometrics.evaluation.honesty_report import GUARD_FILE, guard_evaluation
from biometrics.evaluation.run import encoder_embedder
from tests.conftest import LIBRISPEECH
from tests.default_config import encoder  # noqa: F401 (fixture)

RECORDED = Path(__file__).parents[2] / "docs" / "results" / "calibration" / GUARD_FILE
pytestmark = pytest.mark.skipif(
    not (LIBRISPEECH / "train-clean-5").is_dir(), reason="shared LibriSpeech excerpts absent"
)


def test_the_bundled_model_keeps_its_recorded_eer(encoder: SpeakerEncoder) -> None:  # noqa: F811
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    assert recorded["model"]["sha256"] == encoder.identity.checkpoint_sha256, (
        "the recorded figure is for another model: rerun scripts/calibration_report.py"
    )
    measured = guard_evaluation(encoder_embedder(encoder, "bundled"), LIBRISPEECH)
    low, high = recorded["eer_ci"]
    assert measured.metrics["n_target"] == recorded["n_target"]
    assert measured.metrics["n_nontarget"] == recorded["n_nontarget"]
    assert low <= measured.metrics["eer"] <= high, (
        f"EER {100 * measured.metrics['eer']:.2f} % left its recorded interval "
        f"[{100 * low:.2f}, {100 * high:.2f}] %"
    )
