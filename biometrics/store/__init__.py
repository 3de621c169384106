"""Storage: typed SQLAlchemy models, the database handle and the queries on it."""

from biometrics.store.database import Database
from biometrics.store.models import (
    EnrollmentRecord,
    Speaker,
    SpeakerAlias,
    SpeakerStatus,
    VerificationRecord,
    Voiceprint,
)

__all__ = [
    "Database",
    "EnrollmentRecord",
    "Speaker",
    "SpeakerAlias",
    "SpeakerStatus",
    "VerificationRecord",
    "Voiceprint",
]
