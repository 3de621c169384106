"""What the live-call API refuses, each with its code, HTTP status and a message to act on."""

from __future__ import annotations

from biometrics.errors import BiometricsError


class CallNotFound(BiometricsError):
    code = "call_not_found"
    status_code = 404


class ParticipantNotFound(BiometricsError):
    code = "participant_not_found"
    status_code = 404


class TooManyCalls(BiometricsError):
    """Every slot for calls in memory is taken by calls that are live or pending."""

    code = "too_many_calls"
    status_code = 503


class TooManyParticipants(BiometricsError):
    code = "too_many_participants"
    status_code = 409


class EnrollmentInProgress(BiometricsError):
    code = "enrollment_in_progress"
    status_code = 409
