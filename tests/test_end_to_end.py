"""End to end on real speech with the default configuration (the bundled model and its
shipped calibration): a real uvicorn server, enrollment from 20 s or more of a LibriSpeech
reader, then other recordings of the reader accepted and another reader's rejected, on
SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import LIBRISPEECH
from tests.default_config import encoder, settings  # noqa: F401 (fixtures)

DEV = LIBRISPEECH / "test-other-dev"
pytestmark = pytest.mark.skipif(not DEV.is_dir(), reason="shared LibriSpeech excerpts absent")


def utterances(speaker: str) -> list[Path]:
    return sorted((DEV / speaker).glob("*.flac"))


def test_end_to_end_enroll_from_recordings_and_verify(live_server):
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=120) as client:
        created = client.post("/v1/speakers", json={"speaker_id": "reader-1688"})
        assert created.status_code == 201
        enrolled = None
        for path in utterances("1688")[:6]:
            enrolled = client.post(
                "/v1/speakers/reader-1688/enrollments",
                content=path.read_bytes(),
                headers={"content-type": "audio/flac"},
            ).json()
            if enrolled["enrolled_speech_seconds"] >= 20:
                break
        assert enrolled["status"] == "ENROLLED"
        assert enrolled["enrolled_speech_seconds"] >= 20

        verdicts = {}
        for speaker in ("1688", "367"):
            path = max(utterances(speaker)[6:], key=lambda p: p.stat().st_size)
            with path.open("rb") as audio:
                verdicts[speaker] = client.post(
                    "/v1/verify",
                    data={"speaker_id": "reader-1688"},
                    files={"audio": (path.name, audio, "audio/flac")},
                ).json()
        genuine, impostor = verdicts["1688"], verdicts["367"]
        assert genuine["decision"] == "ACCEPT", genuine
        assert impostor["decision"] == "REJECT", impostor
        assert genuine["calibrated"] is True and genuine["threshold"] == impostor["threshold"]
        assert genuine["score"] >= genuine["threshold"] > impostor["score"]
        for verdict in (genuine, impostor):
            assert verdict["speech_seconds"] >= live_server.settings.min_verify_speech_seconds

        speaker = client.get("/v1/speakers/reader-1688").json()
        assert speaker["last_accessed_at"] is not None
