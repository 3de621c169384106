"""The vocabulary every layer shares: a speaker's status, a call's status, a verdict's
decision (the names Amazon Connect Voice ID users know), and an API key's role. Enums
only, importing nothing, so that storage, scoring and the API all speak it without
depending on each other."""

from __future__ import annotations

import enum


class SpeakerStatus(enum.StrEnum):
    PENDING_ENROLLMENT = "PENDING_ENROLLMENT"
    ENROLLED = "ENROLLED"
    OPTED_OUT = "OPTED_OUT"
    # Unused too long, or past its expires_at: the voiceprint was deleted, the row is kept so
    # that verdicts say SPEAKER_EXPIRED until the speaker enrolls again.
    EXPIRED = "EXPIRED"


class CallStatus(enum.StrEnum):
    PENDING = "PENDING"  # claimed before its audio arrived
    ONGOING = "ONGOING"  # a socket is streaming it
    ENDED = "ENDED"  # its last socket closed (a new socket for the same id resumes it)


class Decision(enum.StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    NOT_ENOUGH_SPEECH = "NOT_ENOUGH_SPEECH"
    POOR_AUDIO_QUALITY = "POOR_AUDIO_QUALITY"  # failed the quality gate; see the issues
    SPEAKER_NOT_ENROLLED = "SPEAKER_NOT_ENROLLED"
    SPEAKER_OPTED_OUT = "SPEAKER_OPTED_OUT"
    SPEAKER_EXPIRED = "SPEAKER_EXPIRED"
    SPEAKER_ID_NOT_PROVIDED = "SPEAKER_ID_NOT_PROVIDED"

    @property
    def scored(self) -> bool:
        """ACCEPT and REJECT come from a score; every other decision was made without one."""
        return self in (Decision.ACCEPT, Decision.REJECT)


class Role(enum.StrEnum):
    """What an API key may do. ``admin`` may do everything; ``stream`` only open sockets."""

    ADMIN = "admin"
    ENROLL = "enroll"  # create speakers, enroll (uploads and calls), opt out
    VERIFY = "verify"  # verify uploads, claim call participants
    READ = "read"  # read speakers, calls, participants, verdicts and events
    STREAM = "stream"  # stream a call's audio to /ws/acs
    METRICS = "metrics"  # read /metrics (what Prometheus scrapes with), nothing else

    def allows(self, needed: Role) -> bool:
        return self is Role.ADMIN or self is needed
