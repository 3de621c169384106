"""Bad requests get a 4xx with a JSON error and leave stored data as it was."""

import numpy as np
import pytest

from tests.api.helpers import enroll, speech_wav, verify
from tests.voices import wav_bytes


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["detail"]


@pytest.fixture
def ada(client):
    enroll(client, "ada", seconds=6.0, seed=1)
    enroll(client, "ada", seconds=6.0, seed=2)
    return client.get("/v1/speakers/ada").json()


def test_unknown_speaker_is_404(client):
    assert_error(client.get("/v1/speakers/nobody"), 404, "speaker_not_found")
    assert_error(client.delete("/v1/speakers/nobody"), 404, "speaker_not_found")
    # A verification is a verdict, as on a live call: nobody by that id is not enrolled.
    verdict = verify(client, "nobody")
    assert verdict.status_code == 200
    assert verdict.json()["decision"] == "SPEAKER_NOT_ENROLLED"
    assert verdict.json()["detail"] == "speaker 'nobody' does not exist"


def test_unknown_route_is_json_404(client):
    assert_error(client.get("/v1/nothing"), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"speaker_id": ""}',
        b'{"speaker_id": "has space"}',
        b'{"speaker_id": "a/b"}',
        b'{"speaker_id": "ok", "aliases": "x"}',
    ],
)
def test_invalid_speaker_bodies_are_400(client, body):
    response = client.post(
        "/v1/speakers", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_request")


def test_corrupt_audio_is_400_and_changes_nothing(client, ada):
    corrupt = client.post(
        "/v1/speakers/ada/enrollments",
        files={"audio": ("voice.wav", b"RIFF....WAVEfmt garbage" * 20, "audio/wav")},
    )
    assert_error(corrupt, 400, "invalid_audio")
    assert_error(verify_with(client, b"\x00\x01" * 10, "audio/wav"), 400, "invalid_audio")
    assert client.get("/v1/speakers/ada").json() == ada


def verify_with(client, data: bytes, content_type: str):
    return client.post(
        "/v1/verify",
        data={"speaker_id": "ada"},
        files={"audio": ("voice.bin", data, content_type)},
    )


def test_a_body_that_is_not_audio_is_415(client, ada):
    response = client.post(
        "/v1/speakers/ada/enrollments", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")
    assert client.get("/v1/speakers/ada").json() == ada


def test_raw_pcm_without_a_rate_is_400(client):
    response = client.post(
        "/v1/speakers/ada/enrollments",
        content=b"\x00" * 3200,
        headers={"content-type": "audio/pcm"},
    )
    assert_error(response, 400, "invalid_request")
    odd = client.post(
        "/v1/speakers/ada/enrollments",
        content=b"\x00" * 3201,
        headers={"content-type": "audio/pcm;rate=16000"},
    )
    assert_error(odd, 400, "invalid_audio")


def test_multipart_without_audio_is_400(client):
    response = client.post("/v1/verify", data={"speaker_id": "ada"}, files={"x": ("a", b"1")})
    assert_error(response, 400, "invalid_request")


def test_verify_without_speaker_id_is_400(client):
    response = client.post("/v1/verify", files={"audio": ("v.wav", speech_wav(3.0), "audio/wav")})
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("threshold", ["-1", "101", "high", "nan"])
def test_an_invalid_threshold_is_400(client, ada, threshold):
    assert_error(verify(client, "ada", threshold=threshold), 400, "invalid_request")


def test_an_upload_over_the_size_limit_is_413(client, ada, settings):
    too_big = b"\x00" * (settings.max_upload_bytes + 2)
    declared = client.post(
        "/v1/speakers/ada/enrollments",
        content=too_big,
        headers={"content-type": "audio/pcm;rate=16000"},
    )
    assert_error(declared, 413, "payload_too_large")

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(settings.max_upload_bytes // 65536 + 2):
            yield b"\x00" * 65536

    streamed = client.post(
        "/v1/speakers/ada/enrollments",
        content=chunks(),
        headers={"content-type": "audio/pcm;rate=16000"},
    )
    assert_error(streamed, 413, "payload_too_large")
    assert client.get("/v1/speakers/ada").json() == ada


def test_audio_over_the_duration_limit_is_413(client, settings):
    seconds = settings.max_audio_seconds + 5
    long_quiet = wav_bytes(np.zeros(int(seconds * 8_000), dtype=np.float32), rate=8_000)
    response = client.post(
        "/v1/speakers/ada/enrollments", content=long_quiet, headers={"content-type": "audio/wav"}
    )
    assert_error(response, 413, "payload_too_large")


def test_a_broken_multipart_body_is_400(client):
    response = client.post(
        "/v1/verify",
        content=b"--xyz\r\nnonsense",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400
    assert response.json()["error"] in ("bad_request", "invalid_request")
