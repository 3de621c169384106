"""End to end on real speech with the default configuration: the bundled model and
its shipped calibration, a real uvicorn server, a four-participant unmixed ACS call.
A genuine caller is accepted and an impostor claiming the same identity is rejected."""

from __future__ import annotations

import asyncio
import urllib.parse

import httpx
import numpy as np
import pytest

from biometrics.audio import SpeechDetector, decode_audio
from biometrics.config import LIVE_EMBEDDINGS
from tests.conftest import LIBRISPEECH
from tests.default_config import encoder, settings  # noqa: F401 (fixtures)
from tests.streaming.helpers import call_messages
from tests.test_live_call_end_to_end import send_call, wait_for_call, ws_url

DEV = LIBRISPEECH / "test-other-dev"
pytestmark = pytest.mark.skipif(not DEV.is_dir(), reason="shared LibriSpeech excerpts absent")

GENUINE, IMPOSTOR, AGENT, OTHER = "4:+14255550101", "4:+14255550102", "8:acs:agent", "8:acs:x"


def utterances(speaker: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((DEV / speaker).glob("*.flac"))]


def speech_of(data: bytes) -> np.ndarray:
    return SpeechDetector().detect(decode_audio(data)).speech()


@pytest.mark.parametrize("settings", LIVE_EMBEDDINGS, indirect=True)
def test_end_to_end_default_model_accepts_the_genuine_caller_and_rejects_an_impostor(
    live_server,
):
    """With either live embedding (re-embedding the window, or each stretch once)."""
    assert live_server.settings.model_source == "bundled"
    enrollment, rest = utterances("1688")[:4], utterances("1688")[4:]
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        for data in enrollment:
            enrolled = http.post(
                "/v1/speakers/reader-1688/enrollments",
                content=data,
                headers={"content-type": "audio/flac"},
            ).json()
        assert enrolled["status"] == "ENROLLED", enrolled
        call_id = "real-speech"
        for raw_id in (GENUINE, IMPOSTOR, OTHER):
            claimed = http.put(
                f"/v1/calls/{call_id}/participants/{urllib.parse.quote(raw_id, safe='')}/claim",
                json={"speaker_id": "reader-1688"},
            )
            assert claimed.status_code == 200, claimed.text
        participants = {
            GENUINE: np.concatenate([speech_of(data) for data in rest[:2]]),
            IMPOSTOR: np.concatenate([speech_of(data) for data in utterances("367")[:2]]),
            OTHER: np.concatenate([speech_of(data) for data in utterances("2033")[:2]]),
            AGENT: np.concatenate([speech_of(data) for data in utterances("533")[:2]]),
        }
        asyncio.run(send_call(ws_url(live_server), call_id, call_messages(participants)))
        call = wait_for_call(http, call_id, lambda body: body["status"] == "ENDED", timeout=120)
    verdicts = {p["participant_raw_id"]: p["latest_verdict"] for p in call["participants"]}
    assert verdicts[GENUINE]["decision"] == "ACCEPT", verdicts[GENUINE]
    assert verdicts[IMPOSTOR]["decision"] == "REJECT", verdicts[IMPOSTOR]
    assert verdicts[OTHER]["decision"] == "REJECT", verdicts[OTHER]
    assert verdicts[AGENT]["decision"] == "SPEAKER_ID_NOT_PROVIDED"
    assert verdicts[GENUINE]["calibrated"] is True
    assert verdicts[GENUINE]["score"] > verdicts[IMPOSTOR]["score"] + 30
    assert verdicts[GENUINE]["model"]["source"] == "bundled:ecapa-distilled"


def test_end_to_end_a_live_call_and_an_upload_of_the_same_speech_get_the_same_verdict(
    live_server,
):
    """One verification service: the same recording, streamed as an ACS call or posted to
    /v1/verify for the same claim, gets the same decision and (nearly) the same score. The
    audio goes in whole, silence and all, so that both paths find the speech themselves."""
    enrollment, rest = utterances("1688")[:4], utterances("1688")[4:]
    genuine = next(data for data in rest if 4.0 < len(speech_of(data)) / 16_000 < 9.5)
    impostor = next(data for data in utterances("367") if 4.0 < len(speech_of(data)) / 16_000 < 9.5)
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        for data in enrollment:
            http.post(
                "/v1/speakers/reader-1688/enrollments",
                content=data,
                headers={"content-type": "audio/flac"},
            ).raise_for_status()
        call_id = "same-speech"
        for raw_id in (GENUINE, IMPOSTOR):
            http.put(
                f"/v1/calls/{call_id}/participants/{urllib.parse.quote(raw_id, safe='')}/claim",
                json={"speaker_id": "reader-1688"},
            ).raise_for_status()
        participants = {GENUINE: decode_audio(genuine), IMPOSTOR: decode_audio(impostor)}
        asyncio.run(send_call(ws_url(live_server), call_id, call_messages(participants)))
        call = wait_for_call(http, call_id, lambda body: body["status"] == "ENDED", timeout=120)
        live = {p["participant_raw_id"]: p["latest_verdict"] for p in call["participants"]}
        uploaded = {
            raw_id: http.post(
                "/v1/verify",
                data={"speaker_id": "reader-1688"},
                files={"audio": ("speech.flac", data, "audio/flac")},
            ).json()
            for raw_id, data in ((GENUINE, genuine), (IMPOSTOR, impostor))
        }
    assert live[GENUINE]["decision"] == uploaded[GENUINE]["decision"] == "ACCEPT"
    assert live[IMPOSTOR]["decision"] == uploaded[IMPOSTOR]["decision"] == "REJECT"
    for raw_id in (GENUINE, IMPOSTOR):
        streamed, posted = live[raw_id], uploaded[raw_id]
        assert abs(streamed["speech_seconds"] - posted["speech_seconds"]) <= 0.1, raw_id
        assert abs(streamed["score"] - posted["score"]) <= 1.0, (raw_id, streamed, posted)
        assert abs(streamed["similarity"] - posted["similarity"]) <= 0.01, raw_id
        assert streamed["threshold"] == posted["threshold"]
        assert streamed["quality"]["issues"] == posted["quality"]["issues"] == []
        assert streamed["call_id"] == call_id and posted["call_id"] is None
