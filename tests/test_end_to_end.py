"""End to end on real speech: a real uvicorn server, enrollment from 20 s or more of
a LibriSpeech reader, verification of other recordings, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import LIBRISPEECH

DEV = LIBRISPEECH / "test-other-dev"
pytestmark = pytest.mark.skipif(not DEV.is_dir(), reason="shared LibriSpeech excerpts absent")


def utterances(speaker: str) -> list[Path]:
    return sorted((DEV / speaker).glob("*.flac"))


def test_end_to_end_enroll_from_recordings_and_verify(live_server):
    with httpx.Client(base_url=live_server.url, timeout=120) as client:
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

        longest = [max(utterances(s)[6:], key=lambda p: p.stat().st_size) for s in ("1688", "367")]
        for path in longest:
            with path.open("rb") as audio:
                verdict = client.post(
                    "/v1/verify",
                    data={"speaker_id": "reader-1688"},
                    files={"audio": (path.name, audio, "audio/flac")},
                ).json()
            assert verdict["decision"] in ("ACCEPT", "REJECT")
            assert 0 <= verdict["score"] <= 100
            assert verdict["speech_seconds"] >= live_server.settings.min_verify_speech_seconds

        speaker = client.get("/v1/speakers/reader-1688").json()
        assert speaker["last_accessed_at"] is not None
