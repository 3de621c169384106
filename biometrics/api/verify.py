"""Verification of an uploaded recording against a claimed speaker: the upload's speech is
found by a detector of its own, then the verification service decides, as for live calls."""

from __future__ import annotations

import math

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from biometrics.api.audit import Auditor, origin_of
from biometrics.api.speakers import check_speaker_id
from biometrics.api.uploads import read_audio_upload
from biometrics.audio import detect_speech
from biometrics.clock import utcnow
from biometrics.errors import BiometricsError, InvalidRequest, SpeakerLockedOut
from biometrics.verification import VerificationService


class VerifyRoute:
    """``POST /v1/verify``: multipart ``speaker_id`` and ``audio``, optional ``threshold``."""

    def __init__(
        self, verifier: VerificationService, max_audio_seconds: float, auditor: Auditor
    ) -> None:
        self._verifier = verifier
        self._max_audio_seconds = max_audio_seconds
        self._auditor = auditor

    async def verify(self, request: Request) -> Response:
        upload = await read_audio_upload(request, self._max_audio_seconds)
        speaker_id = upload.fields.get("speaker_id")
        if not speaker_id:
            raise InvalidRequest("speaker_id is required (a form field or query parameter)")
        threshold = _threshold(upload.fields.get("threshold"))
        speaker_id = check_speaker_id(speaker_id)
        speech = await run_in_threadpool(detect_speech, upload.samples)
        origin = origin_of(request)
        try:
            # The verdict's audit row is the verification service's to write.
            verdict = await self._verifier.verify(
                speaker_id, speech, threshold=threshold, origin=origin
            )
        except Exception as error:  # no verdict: the row says why
            code = error.code if isinstance(error, BiometricsError) else "internal_error"
            await self._auditor.record(origin, "speaker.verify", speaker_id, code)
            raise
        if verdict.locked_until is not None:  # recorded and audited as a REJECT already
            raise SpeakerLockedOut(
                verdict.detail or "locked out",
                retry_after=(verdict.locked_until - utcnow()).total_seconds(),
            )
        return JSONResponse(verdict.as_dict())


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
