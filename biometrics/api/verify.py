"""Verification of an uploaded recording against a claimed speaker."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from biometrics.api.speakers import check_speaker_id
from biometrics.api.uploads import read_audio_upload
from biometrics.errors import InvalidRequest
from biometrics.services import services_of


async def verify(request: Request) -> Response:
    services = services_of(request)
    upload = await read_audio_upload(request, services.settings.max_audio_seconds)
    speaker_id = upload.fields.get("speaker_id")
    if not speaker_id:
        raise InvalidRequest("speaker_id is required (a form field or query parameter)")
    threshold = _threshold(upload.fields.get("threshold"))
    result = await services.verifier.verify(check_speaker_id(speaker_id), upload.samples, threshold)
    return JSONResponse(result.as_dict())


def _threshold(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        threshold = float(value)
    except ValueError:
        threshold = math.nan
    if not 0.0 <= threshold <= 100.0:
        raise InvalidRequest(f"threshold must be a number from 0 to 100, got {value!r}")
    return threshold
