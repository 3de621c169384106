"""Reading audio out of a request: a multipart form with an ``audio`` file, or a
raw body whose Content-Type says what it is."""

from __future__ import annotations

import dataclasses

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from biometrics.audio import AudioFormat, decode_audio
from biometrics.errors import InvalidRequest, UnsupportedMediaType

# Self-describing containers: the bytes say what they are.
CONTAINER_TYPES = frozenset(
    {
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/vnd.wave",
        "audio/flac",
        "audio/x-flac",
        "audio/ogg",
        "application/octet-stream",
    }
)
# Headerless signed 16-bit little-endian PCM: the rate must be given.
RAW_PCM_TYPES = frozenset({"audio/pcm", "audio/x-pcm", "audio/s16le", "audio/x-raw"})


@dataclasses.dataclass(frozen=True)
class AudioUpload:
    samples: np.ndarray  # 16 kHz mono float32
    fields: dict[str, str]  # the other form fields, or the query parameters


async def read_audio_upload(request: Request, max_seconds: float) -> AudioUpload:
    media_type, params = parse_content_type(request.headers.get("content-type", ""))
    if media_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=16) as form:
            audio = form.get("audio")
            if not isinstance(audio, UploadFile):
                raise InvalidRequest("the multipart field 'audio' must hold the audio file")
            data = await audio.read()
            fields = {key: value for key, value in form.items() if isinstance(value, str)}
            part_type, part_params = parse_content_type(audio.content_type or "")
        fields = {**dict(request.query_params), **fields}
        audio_format = _audio_format(part_type, {**part_params, **fields})
    elif media_type in CONTAINER_TYPES or media_type in RAW_PCM_TYPES:
        data = await request.body()
        fields = dict(request.query_params)
        audio_format = _audio_format(media_type, {**params, **fields})
    else:
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'!r} is not audio: send multipart/form-data "
            "with an 'audio' file, or a body of type audio/wav, audio/flac or "
            "audio/pcm;rate=16000"
        )
    samples = await run_in_threadpool(decode_audio, data, audio_format, max_seconds=max_seconds)
    return AudioUpload(samples=samples, fields=fields)


def parse_content_type(header: str) -> tuple[str, dict[str, str]]:
    media_type, *pieces = header.split(";")
    params = {}
    for piece in pieces:
        key, _, value = piece.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return media_type.strip().lower(), params


def _audio_format(media_type: str, options: dict[str, str]) -> AudioFormat:
    channel = _int_option(options, "channel")
    raw = media_type in RAW_PCM_TYPES or options.get("format", "").lower() == "s16le"
    if not raw:
        return AudioFormat(channel=channel)
    rate = _int_option(options, "rate") or _int_option(options, "sample_rate")
    if rate is None:
        raise InvalidRequest(
            "raw PCM needs its sample rate: Content-Type audio/pcm;rate=16000, or a "
            "sample_rate field"
        )
    return AudioFormat(
        raw_pcm_rate=rate, raw_pcm_channels=_int_option(options, "channels") or 1, channel=channel
    )


def _int_option(options: dict[str, str], name: str) -> int | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {value!r}") from None
