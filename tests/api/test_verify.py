"""POST /v1/verify: one verdict per upload, from the same verification service as live calls.
The expected decisions here follow from the audio, not from the response: the exact audio
a speaker enrolled with matches their voiceprint (cosine 1), a strict threshold refuses it."""

from __future__ import annotations

import concurrent.futures
import dataclasses

import httpx
import numpy as np
import sqlalchemy as sa
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.embedding import load_encoder
from biometrics.store import Database
from biometrics.training.folders import ecapa_hyperparams, write_initialised_folder
from tests.api.helpers import VOICE_A, VOICE_B, enroll, speech_wav, verify
from tests.conftest import bearer
from tests.voices import synthetic_speech, wav_bytes

VERDICT_FIELDS = {
    "verdict_id",
    "speaker_id",
    "decision",
    "score",
    "similarity",
    "normalized_score",
    "threshold",
    "calibrated",
    "speech_seconds",
    "quality",
    "call_id",
    "participant_raw_id",
    "first_audio_at",
    "last_audio_at",
    "final",
    "model",
    "detail",
    "created_at",
}


def enrolled_once(client, speaker_id="ada", seed=1):
    """One upload of 10 s: the voiceprint is exactly that upload's embedding."""
    response = enroll(client, speaker_id, seconds=10.0, seed=seed)
    assert response.json()["status"] == "ENROLLED", response.json()


def verify_enrollment_audio(client, speaker_id="ada", seed=1, **fields):
    return verify(client, speaker_id, seconds=10.0, seed=seed, **fields)


def test_the_enrolled_voice_itself_is_accepted_with_a_full_verdict(client):
    enrolled_once(client)
    result = verify_enrollment_audio(client).json()
    assert set(result) == VERDICT_FIELDS
    assert result["decision"] == "ACCEPT"
    assert result["similarity"] > 0.999 and result["score"] > 99.9
    assert result["threshold"] == 30.0  # uncalibrated default
    assert result["calibrated"] is False and result["final"] is True
    assert result["call_id"] is None and result["participant_raw_id"] is None
    assert result["speech_seconds"] > 8.0
    assert result["model"]["sha256"] == client.get("/readyz").json()["model"]["sha256"]
    assert result["quality"]["issues"] == [] and result["quality"]["snr_db"] > 10
    assert result["created_at"].endswith("Z") and len(result["verdict_id"]) == 36


def test_the_request_threshold_overrides_the_default(client):
    enrolled_once(client)
    lenient = verify(client, "ada", seconds=6.0, seed=4, threshold="0").json()
    assert lenient["decision"] == "ACCEPT" and lenient["threshold"] == 0.0
    # Another utterance never matches perfectly: a threshold of 100 refuses it.
    strict = verify(client, "ada", seconds=6.0, seed=4, threshold="100").json()
    assert strict["decision"] == "REJECT" and strict["threshold"] == 100.0
    assert strict["score"] == lenient["score"] < 100.0


def test_too_little_speech_is_not_judged(client):
    enrolled_once(client)
    result = verify(client, "ada", seconds=1.5).json()
    assert result["decision"] == "NOT_ENOUGH_SPEECH"
    assert result["score"] is None
    assert 0 < result["speech_seconds"] < 2.0
    assert "a verdict needs 2 s" in result["detail"]


def test_speakers_that_cannot_be_judged(client):
    assert verify(client, "nobody").json()["decision"] == "SPEAKER_NOT_ENROLLED"
    enroll(client, "ada", seconds=4.0)
    pending = verify(client, "ada").json()
    assert (pending["decision"], pending["score"]) == ("SPEAKER_NOT_ENROLLED", None)
    client.post("/v1/speakers/ada/opt-out")
    assert verify(client, "ada").json()["decision"] == "SPEAKER_OPTED_OUT"


def test_clipped_audio_is_poor_quality_never_accepted(client):
    enrolled_once(client)
    loud = np.clip(synthetic_speech(10.0, seed=1, **VOICE_A) * 40, -1.0, 1.0)
    clipped = client.post(
        "/v1/verify",
        data={"speaker_id": "ada"},
        files={"audio": ("loud.wav", wav_bytes(loud.astype(np.float32)), "audio/wav")},
    )
    assert clipped.status_code == 200, clipped.json()
    body = clipped.json()
    assert body["decision"] == "POOR_AUDIO_QUALITY"
    assert "CLIPPING" in body["quality"]["issues"] and body["score"] is None


def test_verdicts_are_recorded_and_an_accept_marks_the_speaker_used(client, settings):
    def last_used() -> str:
        return client.get("/v1/speakers/ada").json()["last_accessed_at"]

    enrolled_once(client)
    enrolled = last_used()
    first = verify_enrollment_audio(client).json()
    accepted = last_used()
    second = verify(client, "ada", seconds=1.0).json()
    assert enrolled is not None and accepted > enrolled
    assert last_used() == accepted  # NOT_ENOUGH_SPEECH is no use of the voiceprint
    with Database(settings.database_url).engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT verdict_id, decision, call_id FROM verdicts ORDER BY id")
        ).all()
    assert [(row.verdict_id, row.decision, row.call_id) for row in rows] == [
        (first["verdict_id"], "ACCEPT", None),
        (second["verdict_id"], "NOT_ENOUGH_SPEECH", None),
    ]


def test_a_file_gets_the_same_verdict_whatever_came_before(client):
    """No state is shared between requests: the speech detector is the request's own."""
    enrolled_once(client)
    before = verify(client, "ada", seconds=6.0, seed=4).json()
    for seed, seconds in ((11, 3.0), (12, 8.0), (13, 5.0)):
        client.post(
            "/v1/verify",
            data={"speaker_id": "ada"},
            files={"audio": ("b.wav", speech_wav(seconds, seed, VOICE_B), "audio/wav")},
        )
    after = verify(client, "ada", seconds=6.0, seed=4).json()
    assert (after["speech_seconds"], after["similarity"], after["score"]) == (
        before["speech_seconds"],
        before["similarity"],
        before["score"],
    )
    assert after["quality"] == before["quality"]


def test_concurrent_verifications_of_one_file_are_identical(live_server):
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        http.post(
            "/v1/speakers/ada/enrollments",
            files={"audio": ("a.wav", speech_wav(10.0, 1), "audio/wav")},
        ).raise_for_status()
    target = speech_wav(6.0, 4)
    others = [speech_wav(4.0 + index, 20 + index, VOICE_B) for index in range(8)]

    def post(audio: bytes) -> dict:
        with httpx.Client(
            base_url=live_server.url, headers=live_server.headers, timeout=60
        ) as http:
            response = http.post(
                "/v1/verify",
                data={"speaker_id": "ada"},
                files={"audio": ("v.wav", audio, "audio/wav")},
            )
            response.raise_for_status()
            return response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        # 8 copies of the target interleaved with 8 other voices, all at once.
        uploads = [audio for other in others for audio in (target, other)]
        results = list(pool.map(post, uploads))
    targets = results[::2]
    seen = {(r["speech_seconds"], r["similarity"], r["score"], r["decision"]) for r in targets}
    assert len(seen) == 1, seen


def test_a_voiceprint_of_another_model_is_never_compared(client, settings, tmp_path, admin_key):
    enrolled_once(client)
    other_folder = write_initialised_folder(
        tmp_path / "other-model", ecapa_hyperparams(channels=64, n_classes=8), seed=7
    )
    other = load_encoder(str(other_folder), tmp_path / "cache")
    app = create_app(settings, encoder=other)
    with TestClient(app, headers=bearer(admin_key)) as other_client:
        refused = verify_enrollment_audio(other_client).json()
        assert (refused["decision"], refused["score"]) == ("SPEAKER_NOT_ENROLLED", None)
        assert "another model" in refused["detail"] and "re-enroll" in refused["detail"]
        accumulate = enroll(other_client, "ada")
        assert accumulate.status_code == 409
        assert accumulate.json()["error"] == "model_mismatch"
        replaced = enroll(other_client, "ada", seconds=10.0, seed=1, replace="true")
        assert replaced.status_code == 201
        assert verify_enrollment_audio(other_client).json()["decision"] == "ACCEPT"


def test_a_speaker_locked_out_after_failures_is_429_until_an_admin_clears_it(
    settings, encoder, admin_key
):
    strict = dataclasses.replace(settings, lockout_failures=2)
    with TestClient(create_app(strict, encoder=encoder), headers=bearer(admin_key)) as locked:
        enrolled_once(locked)
        for _ in range(2):  # another utterance never reaches 100: two failed attempts
            failed = verify(locked, "ada", seconds=6.0, seed=4, threshold="100").json()
            assert failed["decision"] == "REJECT" and failed["score"] is not None
        refused = verify_enrollment_audio(locked)
        assert refused.status_code == 429
        assert refused.json()["error"] == "speaker_locked_out"
        assert 800 <= int(refused.headers["retry-after"]) <= 900
        assert locked.delete("/v1/speakers/ada/lockout").status_code == 200
        assert verify_enrollment_audio(locked).json()["decision"] == "ACCEPT"
        audit = locked.get("/v1/audit", params={"action": "speaker.clear_lockout"}).json()
        assert [row["subject"] for row in audit["entries"]] == ["ada"]
