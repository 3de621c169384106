"""Call recordings over REST, admin keys only: record one call or not, whatever
``BIOMETRICS_RECORDINGS`` says (``PUT /v1/calls/{id}/recording``), and download a
participant's recording as a 16 kHz WAV, or as the raw PCM it arrived as (``?format=pcm``).
Every choice and every download leaves an audit row."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from biometrics.api import schemas
from biometrics.api.audit import Auditor, origin_of
from biometrics.api.auth import Guard
from biometrics.api.calls import _call_id, _raw_id
from biometrics.api.openapi import WITH_BODY, Operation, Reply
from biometrics.statuses import Role
from biometrics.store.recordings import RecordingAudio, Recordings
from biometrics.streaming.registry import CallRegistry

CHOOSE = Operation(
    "setCallRecording",
    "Record this call, or stop recording it, whatever the service's default",
    "recordings",
    [Reply(200, "the call's choice, and the service's default", schemas.RecordingChoice)],
    {status: ("invalid_request",) for status in WITH_BODY},
    body=schemas.RecordingRequest,
    description=(
        "Participants streaming now are recorded from their next frame, ones to come from "
        "their first; `false` stops it and keeps what was recorded. Audited."
    ),
)
DOWNLOAD = Operation(
    "getParticipantAudio",
    "Download a participant's recording, once its call has ended",
    "recordings",
    [
        Reply(
            200,
            "a 16 kHz 16-bit mono WAV; with format=pcm the PCM as received (s16le "
            "mono at X-Sample-Rate, application/octet-stream)",
            media_type="audio/wav",
        ),
    ],
    {
        400: ("invalid_request",),
        404: ("recording_not_found",),
        409: ("recording_in_progress",),
    },
    query=schemas.AudioQuery,
    description="Every download is audited as `recording.download`.",
)


class RecordingRoutes:
    def __init__(self, recordings: Recordings, calls: CallRegistry, auditor: Auditor) -> None:
        self._recordings = recordings
        self._calls = calls
        self._auditor = auditor

    def routes(self, guard: Guard) -> list[Route]:
        """Before the call routes: their participant path would take ``.../audio`` whole."""
        call = "/v1/calls/{call_id}"
        audio = call + "/participants/{participant_raw_id:path}/audio"
        return [
            guard.route(call + "/recording", Role.ADMIN, self.put_recording, "PUT", CHOOSE),
            guard.route(audio, Role.ADMIN, self.get_audio, "GET", DOWNLOAD),
        ]

    async def put_recording(self, request: Request) -> Response:
        """``{"enabled": true}`` records the call from now on (participants streaming now
        from their next frame; ones to come from their first), ``false`` stops it (what was
        recorded so far is complete and kept). Audited as ``call.recording``, ``on`` or
        ``off``."""
        call_id = _call_id(request)
        enabled = (await schemas.json_body(request, schemas.RecordingRequest)).enabled
        actor = origin_of(request).actor
        async with self._auditor.act(request, "call.recording", call_id, call_id=call_id) as out:
            out.append("on" if enabled else "off")
            await run_in_threadpool(self._recordings.choose, call_id, enabled, actor)
            live = self._calls.find(call_id)
            if live is not None:
                live.set_recording(enabled)
        choice = {"call_id": call_id, "recording": enabled, "default": self._recordings.default}
        return schemas.respond(schemas.RecordingChoice, choice)

    async def get_audio(self, request: Request) -> Response:
        """The participant's recording once its call has ended: ``audio/wav`` (16 kHz, 16-bit
        mono), or with ``format=pcm`` the PCM as received (``application/octet-stream``,
        s16le mono at ``X-Sample-Rate``). A call resumed after it ended has several
        recordings: they follow one another. Audited as ``recording.download``."""
        call_id, raw_id = _call_id(request), _raw_id(request)
        kind = schemas.query(request, schemas.AudioQuery).format
        where = {"call_id": call_id, "participant_raw_id": raw_id}
        async with self._auditor.act(request, "recording.download", call_id, **where) as out:
            out.append(kind)
            audio = await run_in_threadpool(
                self._recordings.audio, call_id, raw_id, raw=kind == "pcm"
            )
        headers = {
            "X-Sample-Rate": str(audio.sample_rate),
            "X-Recordings": str(audio.recordings),
            "X-Dropped-Bytes": str(audio.dropped_bytes),
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{_file_name(call_id, raw_id, kind)}"',
        }
        if kind == "pcm":
            headers["Content-Length"] = str(audio.size)
            return StreamingResponse(
                audio.chunks, media_type="application/octet-stream", headers=headers
            )
        headers["Content-Length"] = str(WAV_HEADER_BYTES + audio.size)
        return StreamingResponse(_wav(audio), media_type="audio/wav", headers=headers)


WAV_HEADER_BYTES = 44


def wav_header(sample_rate: int, data_bytes: int) -> bytes:
    """The 44-byte header of a 16-bit mono PCM WAV of ``data_bytes`` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        sample_rate,
        2 * sample_rate,
        2,
        16,
        b"data",
        data_bytes,
    )


def _wav(audio: RecordingAudio) -> Iterator[bytes]:
    yield wav_header(audio.sample_rate, audio.size)
    yield from audio.chunks


def _file_name(call_id: str, raw_id: str, kind: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{call_id}_{raw_id}")
    return f"{safe}.{kind}"
