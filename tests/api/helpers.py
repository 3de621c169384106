"""Uploads the API tests send."""

from __future__ import annotations

from tests.voices import synthetic_speech, wav_bytes

VOICE_A = {"pitch_hz": 110.0, "formants": (650.0, 1100.0, 2400.0)}
VOICE_B = {"pitch_hz": 210.0, "formants": (850.0, 1900.0, 3000.0)}


def speech_wav(seconds: float, seed: int = 0, voice: dict | None = None) -> bytes:
    return wav_bytes(synthetic_speech(seconds, seed=seed, **(voice or VOICE_A)))


def enroll(client, speaker_id: str, seconds: float = 6.0, seed: int = 0, **params):
    return client.post(
        f"/v1/speakers/{speaker_id}/enrollments",
        files={"audio": ("voice.wav", speech_wav(seconds, seed), "audio/wav")},
        params=params,
    )


def verify(client, speaker_id: str, seconds: float = 4.0, seed: int = 9, **fields):
    return client.post(
        "/v1/verify",
        data={"speaker_id": speaker_id, **fields},
        files={"audio": ("voice.wav", speech_wav(seconds, seed), "audio/wav")},
    )
