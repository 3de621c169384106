"""Storage: typed SQLAlchemy models, the database handle and the queries on it, the verdict
history and the live calls' records."""

from biometrics.store.database import Database
from biometrics.store.models import EnrollmentRecord, Speaker, SpeakerAlias, Voiceprint

__all__ = ["Database", "EnrollmentRecord", "Speaker", "SpeakerAlias", "Voiceprint"]
