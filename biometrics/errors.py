"""Typed errors. Each carries a stable machine code, an HTTP status for the REST
layer and a message a user can act on."""

from __future__ import annotations


class BiometricsError(Exception):
    code = "internal_error"
    status_code = 500

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after  # seconds, sent as Retry-After when set


class ConfigError(BiometricsError):
    code = "invalid_configuration"


class ModelLoadError(BiometricsError):
    code = "model_unavailable"
    status_code = 503


class InvalidRequest(BiometricsError):
    code = "invalid_request"
    status_code = 400


class InvalidAudio(BiometricsError):
    code = "invalid_audio"
    status_code = 400


class UnsupportedMediaType(BiometricsError):
    code = "unsupported_media_type"
    status_code = 415


class PayloadTooLarge(BiometricsError):
    code = "payload_too_large"
    status_code = 413


class SpeakerNotFound(BiometricsError):
    code = "speaker_not_found"
    status_code = 404


class SpeakerExists(BiometricsError):
    code = "speaker_exists"
    status_code = 409


class SpeakerOptedOut(BiometricsError):
    code = "speaker_opted_out"
    status_code = 409


class ModelMismatch(BiometricsError):
    """A voiceprint made by one model compared with an embedding of another."""

    code = "model_mismatch"
    status_code = 409


class InsufficientSpeech(BiometricsError):
    """Valid audio that holds too little speech to use."""

    code = "insufficient_speech"
    status_code = 422


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


class Unauthenticated(BiometricsError):
    """No credential, or one that is unknown, revoked or expired."""

    code = "unauthenticated"
    status_code = 401


class Forbidden(BiometricsError):
    """A genuine key whose role does not allow the request."""

    code = "forbidden"
    status_code = 403


class KeyNotFound(BiometricsError):
    code = "key_not_found"
    status_code = 404


class RateLimited(BiometricsError):
    """Too many requests from one key; ``retry_after`` says when the next one is taken."""

    code = "rate_limited"
    status_code = 429


class VoiceprintUnreadable(BiometricsError):
    """A stored vector that does not decrypt: an unknown key, or sealed for another row."""

    code = "voiceprint_unreadable"
    status_code = 500


class SpeakerLockedOut(BiometricsError):
    """Too many failed verifications of one speaker lately; ``retry_after`` says when."""

    code = "speaker_locked_out"
    status_code = 429


class RequestTimeout(BiometricsError):
    """The request body did not all arrive in time: a stalled or trickling client."""

    code = "request_timeout"
    status_code = 408


class DeadLetterNotFound(BiometricsError):
    code = "dead_letter_not_found"
    status_code = 404


class DeadLetterNotRetryable(BiometricsError):
    """A webhook dead letter that cannot be sent again now: already delivered, being sent
    already, or its URL is not (or no longer) one the service sends to."""

    code = "dead_letter_not_retryable"
    status_code = 409


class WebhooksBusy(BiometricsError):
    """Too many events of a webhook URL are waiting for a retry to take one more."""

    code = "webhooks_busy"
    status_code = 503


class InferenceOverloaded(BiometricsError):
    """The inference queue holds more audio than the service takes on; retry later."""

    code = "inference_overloaded"
    status_code = 503

    def __init__(self, queued_seconds: float, retry_after: float) -> None:
        super().__init__(
            f"the service is busy: {queued_seconds:.0f} s of audio wait for the model; "
            "try again shortly (see Retry-After)",
            retry_after=retry_after,
        )


class InferenceStopped(BiometricsError):
    """The service is shutting down: queued embeddings are not run."""

    code = "inference_stopped"
    status_code = 503

    def __init__(self) -> None:
        super().__init__("the service is shutting down; try again on another instance or later")


class CallElsewhere(BiometricsError):
    """Another replica holds the call (its socket streams there) and this request cannot be
    sent to it, or it did not answer within its lease."""

    code = "call_elsewhere"
    status_code = 503


class SharedStateUnavailable(BiometricsError):
    """Redis, which the replicas share live calls through, does not answer."""

    code = "redis_unavailable"
    status_code = 503

    def __init__(self, needs: str, error: Exception, meanwhile: str = "try again shortly") -> None:
        super().__init__(
            f"{needs}, and Redis does not answer ({error}); {meanwhile}", retry_after=1.0
        )
