"""Verification of an uploaded recording against a claimed speaker: the upload's speech is
found by a detector of its own, then the verification service decides, as for live calls."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from biometrics.api import schemas
from biometrics.api.audit import Auditor, origin_of
from biometrics.api.openapi import UPLOAD, Operation, Reply
from biometrics.api.uploads import read_audio_upload
from biometrics.audio import detect_speech
from biometrics.clock import utcnow
from biometrics.errors import BiometricsError, SpeakerLockedOut
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
        fields = schemas.validated(schemas.VerifyFields, upload.fields)
        speaker_id, threshold = fields.speaker_id, fields.threshold
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
        return schemas.respond(schemas.Verdict, verdict.as_dict())


VERIFY = Operation(
    "verify",
    "Verify a recording against the speaker it claims to be",
    "verification",
    [Reply(200, "the verdict: ACCEPT, REJECT, or why it could not judge", schemas.Verdict)],
    {status: () for status in UPLOAD}
    | {
        400: ("invalid_request", "invalid_audio"),
        404: ("speaker_not_found",),
        409: ("model_mismatch",),
        429: ("speaker_locked_out", "rate_limited"),
    },
    form=schemas.VerifyFields,
    description=(
        "The recording's speech is found by a detector of its own, then judged as a live "
        "call's would be. A speaker locked out after repeated failures is 429 "
        "`speaker_locked_out` with Retry-After."
    ),
)
