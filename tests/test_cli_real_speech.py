"""``biometrics enroll`` and ``biometrics verify`` on real speech with the default
configuration (the bundled model and its shipped calibration) against a real server: the
genuine LibriSpeech reader exits 0 (ACCEPT), another reader claiming them exits 1 (REJECT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biometrics import cli
from tests.conftest import LIBRISPEECH
from tests.default_config import encoder, settings  # noqa: F401 (fixtures)

DEV = LIBRISPEECH / "test-other-dev"
pytestmark = pytest.mark.skipif(not DEV.is_dir(), reason="shared LibriSpeech excerpts absent")


def utterances(speaker: str) -> list[Path]:
    return sorted((DEV / speaker).glob("*.flac"))


def test_enroll_and_verify_a_reader_from_the_command_line(live_server, capsys):
    url = ["--url", live_server.url]
    enrollment = [str(path) for path in utterances("1688")[:6]]
    assert cli.main(["enroll", "--speaker", "reader-1688", *enrollment, *url, "--json"]) == 0
    (outcome,) = json.loads(capsys.readouterr().out)
    assert outcome["status"] == "ENROLLED" and outcome["speech_seconds"] >= 20

    genuine = max(utterances("1688")[6:], key=lambda p: p.stat().st_size)
    impostor = max(utterances("367")[6:], key=lambda p: p.stat().st_size)
    assert cli.main(["verify", "reader-1688", str(genuine), *url]) == 0
    assert capsys.readouterr().out.startswith("ACCEPT reader-1688, score ")
    assert cli.main(["verify", "reader-1688", str(impostor), *url, "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["decision"] == "REJECT" and verdict["calibrated"] is True
    assert verdict["score"] < verdict["threshold"]
