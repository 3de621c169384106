"""Every route of the REST API, in one list."""

from __future__ import annotations

from starlette.routing import Route, WebSocketRoute

from biometrics.api import calls, health, speakers, verify
from biometrics.streaming import endpoint

routes = [
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/v1/speakers", speakers.create_speaker, methods=["POST"]),
    Route("/v1/speakers", speakers.list_speakers, methods=["GET"]),
    Route("/v1/speakers/{speaker_id}", speakers.get_speaker, methods=["GET"]),
    Route("/v1/speakers/{speaker_id}", speakers.delete_speaker, methods=["DELETE"]),
    Route("/v1/speakers/{speaker_id}/opt-out", speakers.opt_out, methods=["POST"]),
    Route("/v1/speakers/{speaker_id}/enrollments", speakers.enroll, methods=["POST"]),
    Route("/v1/verify", verify.verify, methods=["POST"]),
    Route("/v1/calls/{call_id}", calls.get_call, methods=["GET"]),
    Route("/v1/calls/{call_id}/events", calls.call_events, methods=["GET"]),
    # Raw ids may hold "/" once decoded: the suffixed routes come before the bare one.
    Route(
        "/v1/calls/{call_id}/participants/{participant_raw_id:path}/verdicts",
        calls.list_verdicts,
        methods=["GET"],
    ),
    Route(
        "/v1/calls/{call_id}/participants/{participant_raw_id:path}/claim",
        calls.put_claim,
        methods=["PUT"],
    ),
    Route(
        "/v1/calls/{call_id}/participants/{participant_raw_id:path}/enroll",
        calls.enroll_from_call,
        methods=["POST"],
    ),
    Route(
        "/v1/calls/{call_id}/participants/{participant_raw_id:path}",
        calls.get_participant,
        methods=["GET"],
    ),
    WebSocketRoute("/ws/acs", endpoint.acs_stream),
]
