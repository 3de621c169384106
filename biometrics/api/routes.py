"""Every route of the REST API, in one list."""

from __future__ import annotations

from starlette.routing import Route

from biometrics.api import health, speakers, verify

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
]
