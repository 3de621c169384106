"""Decode uploaded audio into the one shape the models take: 16 kHz mono float32.

Containers (WAV in 16/24/32-bit integer or float, FLAC, and whatever else
libsndfile reads) are recognised from their bytes; raw signed 16-bit
little-endian PCM has no header, so its rate must be given.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from biometrics.errors import InvalidAudio, InvalidRequest, PayloadTooLarge

SAMPLE_RATE = 16_000

Samples = npt.NDArray[np.float32]  # mono audio at SAMPLE_RATE, in [-1, 1]


@dataclasses.dataclass(frozen=True)
class AudioFormat:
    """How to read an upload: a self-describing container, or raw s16le PCM."""

    raw_pcm_rate: int | None = None  # set for headerless s16le PCM
    raw_pcm_channels: int = 1
    channel: int | None = None  # pick one channel instead of downmixing

    def __post_init__(self) -> None:
        if self.raw_pcm_rate is not None and not 4_000 <= self.raw_pcm_rate <= 192_000:
            raise InvalidRequest(f"sample rate {self.raw_pcm_rate} Hz is outside 4000-192000")
        if not 1 <= self.raw_pcm_channels <= 32:
            raise InvalidRequest("channels must be between 1 and 32")
        if self.channel is not None and self.channel < 0:
            raise InvalidRequest("channel must be 0 or more")


def decode_audio(
    data: bytes, audio_format: AudioFormat | None = None, *, max_seconds: float | None = None
) -> Samples:
    """Return 16 kHz mono float32 samples in [-1, 1] from an upload's bytes.

    ``max_seconds`` is checked against the header before anything is decoded,
    so a small compressed file cannot expand into an unbounded buffer.
    """
    audio_format = audio_format or AudioFormat()
    if not data:
        raise InvalidAudio("the audio is empty")
    if audio_format.raw_pcm_rate is not None:
        return decode_pcm(
            data,
            audio_format.raw_pcm_rate,
            channels=audio_format.raw_pcm_channels,
            channel=audio_format.channel,
            max_seconds=max_seconds,
        )
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            _check_duration(sound.frames / sound.samplerate, max_seconds)
            samples = sound.read(dtype="float32", always_2d=True)
            rate = sound.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        reason = getattr(error, "error_string", None) or "unreadable data"
        raise InvalidAudio(
            f"could not decode the audio ({reason}): send WAV, FLAC or Ogg, or raw s16le "
            "PCM with its sample rate"
        ) from None
    return _to_model_input(samples, rate, audio_format.channel)


def decode_pcm(
    data: bytes,
    sample_rate: int,
    *,
    channels: int = 1,
    channel: int | None = None,
    max_seconds: float | None = None,
) -> Samples:
    """Decode interleaved signed 16-bit little-endian PCM."""
    frame_bytes = 2 * channels
    if not data:
        raise InvalidAudio("the audio is empty")
    if len(data) % frame_bytes:
        raise InvalidAudio(
            f"raw PCM length {len(data)} is not a multiple of {frame_bytes} bytes "
            f"(16-bit samples x {channels} channel(s))"
        )
    _check_duration(len(data) / frame_bytes / sample_rate, max_seconds)
    samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels)
    return _to_model_input(samples.astype(np.float32) / 32768.0, sample_rate, channel)


def _to_model_input(samples: npt.NDArray[np.float32], rate: int, channel: int | None) -> Samples:
    if samples.shape[0] == 0:
        raise InvalidAudio("the audio holds no samples")
    mono: Samples
    if channel is None:
        mono = samples.mean(axis=1)
    elif channel < samples.shape[1]:
        mono = samples[:, channel]
    else:
        raise InvalidRequest(
            f"channel {channel} does not exist: the audio has {samples.shape[1]} channel(s), "
            "numbered from 0"
        )
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise InvalidAudio("the audio holds NaN or infinite samples")
    if rate != SAMPLE_RATE:
        mono = np.asarray(soxr.resample(mono, rate, SAMPLE_RATE), dtype=np.float32)
    return np.clip(mono, -1.0, 1.0)


def _check_duration(seconds: float, max_seconds: float | None) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise PayloadTooLarge(
            f"the audio lasts {seconds:.1f} s; the limit is {max_seconds:.0f} s "
            "(BIOMETRICS_MAX_AUDIO_SECONDS)"
        )
