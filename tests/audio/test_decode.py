import numpy as np
import pytest

from biometrics.audio import SAMPLE_RATE, AudioFormat, decode_audio, decode_pcm
from biometrics.errors import InvalidAudio, InvalidRequest, PayloadTooLarge
from tests.voices import flac_bytes, pcm_bytes, synthetic_speech, wav_bytes

SPEECH = synthetic_speech(2.0)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_sample_formats_decode_to_the_same_signal(subtype):
    decoded = decode_audio(wav_bytes(SPEECH, subtype=subtype))
    assert decoded.dtype == np.float32
    assert len(decoded) == len(SPEECH)
    assert np.max(np.abs(decoded - SPEECH)) < 1e-3


def test_flac_decodes():
    assert np.max(np.abs(decode_audio(flac_bytes(SPEECH)) - SPEECH)) < 1e-3


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_any_sample_rate_is_resampled_to_16k(rate):
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32) * 0.5
    decoded = decode_audio(wav_bytes(tone, rate=rate))
    assert abs(len(decoded) - SAMPLE_RATE) <= 2
    spectrum = np.abs(np.fft.rfft(decoded))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(decoded) - 440) < 3


def test_stereo_is_downmixed_or_one_channel_is_picked():
    left, right = SPEECH, np.zeros_like(SPEECH)
    stereo = wav_bytes(np.stack([left, right], axis=1))
    assert np.allclose(decode_audio(stereo), SPEECH / 2, atol=1e-3)
    assert np.allclose(decode_audio(stereo, AudioFormat(channel=0)), SPEECH, atol=1e-3)
    assert np.allclose(decode_audio(stereo, AudioFormat(channel=1)), 0, atol=1e-3)
    with pytest.raises(InvalidRequest, match="channel 2 does not exist"):
        decode_audio(stereo, AudioFormat(channel=2))


def test_raw_pcm_needs_and_uses_its_rate():
    pcm = pcm_bytes(synthetic_speech(1.0, rate=8_000))
    decoded = decode_audio(pcm, AudioFormat(raw_pcm_rate=8_000))
    assert abs(len(decoded) - SAMPLE_RATE) <= 2
    stereo = np.frombuffer(pcm, dtype="<i2").repeat(2).tobytes()
    assert len(decode_pcm(stereo, 8_000, channels=2)) == len(decoded)


def test_raw_pcm_with_an_odd_byte_count_is_refused():
    with pytest.raises(InvalidAudio, match="not a multiple of 2 bytes"):
        decode_pcm(b"\x00\x01\x02", 16_000)


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00", b"definitely not audio" * 50])
def test_corrupt_or_empty_audio_is_refused(data):
    with pytest.raises(InvalidAudio):
        decode_audio(data)


def test_audio_over_the_duration_limit_is_refused_before_decoding():
    with pytest.raises(PayloadTooLarge, match=r"lasts 2\.0 s; the limit is 1 s"):
        decode_audio(wav_bytes(SPEECH), max_seconds=1.0)


def test_non_finite_samples_are_refused():
    bad = SPEECH.copy()
    bad[100] = np.nan
    with pytest.raises(InvalidAudio, match="NaN"):
        decode_audio(wav_bytes(bad, subtype="FLOAT"))
