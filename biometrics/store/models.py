"""The tables. Speakers own their aliases, voiceprint and enrollment records: deleting a
speaker deletes all of them (ORM cascade and ``ON DELETE CASCADE`` alike), and the
queries delete the verdicts given on claims of them.

Voiceprints and cohorts are kept encrypted (:mod:`biometrics.store.crypto`): their vector
columns hold nonce + AES-GCM ciphertext under the key named by ``key_id``, and are read
and written only through methods that take the :class:`~biometrics.store.crypto.Cipher`.
A NULL ``key_id`` marks a plain float32 vector written before revision 0006; the service
encrypts those at start (:mod:`biometrics.store.vault`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from biometrics.clock import utcnow
from biometrics.errors import VoiceprintUnreadable
from biometrics.statuses import CallStatus, Role, SpeakerStatus
from biometrics.store.crypto import Cipher, cohort_aad, voiceprint_aad


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend. SQLite keeps no offset: a value is converted
    to UTC before it is written, and read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - SQLAlchemy's own hook


class Speaker(Base):
    __tablename__ = "speakers"

    id: Mapped[int] = mapped_column(primary_key=True)
    speaker_id: Mapped[str] = mapped_column(String(128), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[SpeakerStatus] = mapped_column(
        Enum(SpeakerStatus, native_enum=False, length=32, validate_strings=True)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_accessed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # past it, verdicts are SPEAKER_EXPIRED
    lockout_cleared_at: Mapped[datetime | None]  # failed attempts before it do not count

    aliases: Mapped[list[SpeakerAlias]] = relationship(
        back_populates="speaker", cascade="all, delete-orphan", order_by="SpeakerAlias.alias"
    )
    voiceprint: Mapped[Voiceprint | None] = relationship(
        back_populates="speaker", cascade="all, delete-orphan"
    )
    enrollments: Mapped[list[EnrollmentRecord]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class SpeakerAlias(Base):
    """Another name a caller is known by: a phone number or an ACS raw id."""

    __tablename__ = "speaker_aliases"

    id: Mapped[int] = mapped_column(primary_key=True)
    speaker_pk: Mapped[int] = mapped_column(
        ForeignKey("speakers.id", ondelete="CASCADE"), index=True
    )
    alias: Mapped[str] = mapped_column(String(256), unique=True)

    speaker: Mapped[Speaker] = relationship(back_populates="aliases")


class Voiceprint(Base):
    __tablename__ = "voiceprints"

    id: Mapped[int] = mapped_column(primary_key=True)
    speaker_pk: Mapped[int] = mapped_column(
        ForeignKey("speakers.id", ondelete="CASCADE"), unique=True
    )
    model_source: Mapped[str] = mapped_column(String(512))
    model_sha256: Mapped[str] = mapped_column(String(64))
    dimension: Mapped[int] = mapped_column(Integer)
    # Sealed float32 (little-endian, unit length): nonce + ciphertext + tag, or plain
    # float32 while key_id is NULL.
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str | None] = mapped_column(String(32))
    speech_seconds: Mapped[float] = mapped_column(Float)
    segment_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    speaker: Mapped[Speaker] = relationship(back_populates="voiceprint")

    def embedding(self, cipher: Cipher, speaker_id: str) -> npt.NDArray[np.float32]:
        """The vector, decrypted; it opens only for its own speaker and model."""
        what = f"the voiceprint of speaker {speaker_id!r}"
        plain = cipher.open(
            self.key_id, self.vector, voiceprint_aad(speaker_id, self.model_sha256), what
        )
        return _floats(plain, (self.dimension,), what)

    def seal(
        self, cipher: Cipher, speaker_id: str, model_sha256: str, vector: npt.ArrayLike
    ) -> None:
        """Store ``vector``, made by the model ``model_sha256``, sealed to the speaker."""
        floats = np.asarray(vector, dtype="<f4")
        self.model_sha256 = model_sha256
        self.dimension = int(floats.shape[0])
        self.key_id, self.vector = cipher.seal(
            floats.tobytes(), voiceprint_aad(speaker_id, model_sha256)
        )


class EnrollmentRecord(Base):
    __tablename__ = "enrollment_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    speaker_pk: Mapped[int] = mapped_column(
        ForeignKey("speakers.id", ondelete="CASCADE"), index=True
    )
    model_sha256: Mapped[str] = mapped_column(String(64))
    speech_seconds: Mapped[float] = mapped_column(Float)
    audio_seconds: Mapped[float] = mapped_column(Float)
    segment_count: Mapped[int] = mapped_column(Integer)
    replaced_previous: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScoreCohort(Base):
    """Impostor embeddings for AS-norm, one set per model."""

    __tablename__ = "score_cohorts"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(Integer)
    dimension: Mapped[int] = mapped_column(Integer)
    # Sealed float32 (little-endian, row-major), as Voiceprint.vector.
    vectors: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str | None] = mapped_column(String(32))
    top_n: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def embeddings(self, cipher: Cipher) -> npt.NDArray[np.float32]:
        """The (size, dimension) matrix, decrypted; it opens only for its own model."""
        what = f"the score cohort of model {self.model_sha256[:12]}"
        plain = cipher.open(self.key_id, self.vectors, cohort_aad(self.model_sha256), what)
        return _floats(plain, (self.size, self.dimension), what)

    def seal(self, cipher: Cipher, vectors: npt.ArrayLike) -> None:
        """Store ``vectors`` (one per row) sealed to the cohort's model; set model_sha256
        first."""
        matrix = np.asarray(vectors, dtype="<f4")
        self.size, self.dimension = (int(n) for n in matrix.shape)
        self.key_id, self.vectors = cipher.seal(matrix.tobytes(), cohort_aad(self.model_sha256))


def _floats(plain: bytes, shape: tuple[int, ...], what: str) -> npt.NDArray[np.float32]:
    expected = 4 * int(np.prod(shape))
    if len(plain) != expected:
        raise VoiceprintUnreadable(f"{what} holds {len(plain)} bytes, not the {expected} expected")
    return np.frombuffer(plain, dtype="<f4").reshape(shape).astype(np.float32)


class EncryptionKey(Base):
    """Each key that has sealed vectors, with a constant sealed under it: a key configured
    under an id it does not open is refused at start."""

    __tablename__ = "encryption_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    check_value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScoreCalibration(Base):
    """The score calibration of one model, with thresholds by false-accept rate: a logistic
    map, and from format 2 the duration model before it (the versioned form of a model
    folder's calibration.json; rows stored before format 2 are format 1)."""

    __tablename__ = "score_calibrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[int] = mapped_column(Integer, server_default="1")
    duration: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # format 2's duration model
    slope: Mapped[float] = mapped_column(Float)
    intercept: Mapped[float] = mapped_column(Float)
    normalized: Mapped[bool]
    thresholds: Mapped[dict[str, float]] = mapped_column(JSON)  # far -> 0-100 threshold
    description: Mapped[str] = mapped_column(String(512))
    eer: Mapped[float] = mapped_column(Float)
    target_trials: Mapped[int] = mapped_column(Integer)
    nontarget_trials: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Call(Base):
    """A live call's summary: who streamed it, when, and what the parser counted."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(256), unique=True)
    correlation_id: Mapped[str | None] = mapped_column(String(256))
    subscription_id: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[CallStatus] = mapped_column(
        Enum(CallStatus, native_enum=False, length=16, validate_strings=True)
    )
    sockets: Mapped[int] = mapped_column(Integer)  # WebSocket connections so far
    counters: Mapped[dict[str, int]] = mapped_column(JSON)  # frames, drops, ... over all sockets
    # What the latest socket's AudioMetadata announced: encoding, sample_rate, frame_bytes.
    audio_format: Mapped[dict[str, object] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    participants: Mapped[list[CallParticipant]] = relationship(
        back_populates="call",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="CallParticipant.id",
    )


class CallParticipant(Base):
    """One participant of a call (``raw_id`` "mixed" for mixed audio) and its progress."""

    __tablename__ = "call_participants"
    __table_args__ = (UniqueConstraint("call_pk", "raw_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_pk: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    raw_id: Mapped[str] = mapped_column(String(256))
    mixed: Mapped[bool] = mapped_column(default=False)  # the call's mixed stream
    joined_at: Mapped[datetime | None]  # its first frame; None while only claimed
    first_frame_at: Mapped[datetime | None]
    last_frame_at: Mapped[datetime | None]
    frames: Mapped[int] = mapped_column(Integer)
    speech_seconds: Mapped[float] = mapped_column(Float)  # net speech over the whole call
    claimed_speaker_id: Mapped[str | None] = mapped_column(String(128))
    claim_threshold: Mapped[float | None] = mapped_column(Float)
    claim_source: Mapped[str | None] = mapped_column(String(16))  # "api" or "alias"
    # Enrollment from this call's speech: speaker_id, status, seconds, active, detail.
    enrollment: Mapped[dict[str, object] | None] = mapped_column(JSON)
    latest_decision: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    call: Mapped[Call] = relationship(back_populates="participants")


class VerdictRecord(Base):
    """Every verdict the service gave, over REST or in a live call (then the call columns
    are set), in order. Keyed by ids rather than foreign keys, so that writing a verdict
    never waits for its call's row, and the history outlives the rows it names."""

    __tablename__ = "verdicts"
    __table_args__ = (Index("ix_verdicts_call", "call_id", "participant_raw_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    verdict_id: Mapped[str] = mapped_column(String(36), unique=True)
    speaker_id: Mapped[str | None] = mapped_column(String(128), index=True)
    call_id: Mapped[str | None] = mapped_column(String(256))
    participant_raw_id: Mapped[str | None] = mapped_column(String(256))
    decision: Mapped[str] = mapped_column(String(32))
    score: Mapped[float | None] = mapped_column(Float)
    similarity: Mapped[float | None] = mapped_column(Float)
    normalized_score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    calibrated: Mapped[bool]
    speech_seconds: Mapped[float] = mapped_column(Float)
    quality: Mapped[dict[str, object] | None] = mapped_column(JSON)
    first_audio_at: Mapped[datetime | None]
    last_audio_at: Mapped[datetime | None]
    final: Mapped[bool]
    model_source: Mapped[str] = mapped_column(String(512))
    model_sha256: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiKey(Base):
    """A key for the API. Only a salted hash of its secret is kept: the secret is shown
    once, when the key is made."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)  # public, part of the key
    name: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[Role] = mapped_column(
        Enum(
            Role,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda roles: [role.value for role in roles],
        )
    )
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AuditRecord(Base):
    """One act on the service, kept for its audit trail: who (a key id, ``acs``, ``cli``,
    ``anonymous`` or ``service``), did what, to whom, with what outcome, in which request
    and from where. Ids and outcomes only, never a secret, a vector, a score or audio; keyed
    by ids rather than foreign keys, so that a row outlives the speaker or key it names."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str | None] = mapped_column(String(256), index=True)
    call_id: Mapped[str | None] = mapped_column(String(256))
    participant_raw_id: Mapped[str | None] = mapped_column(String(256))
    outcome: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(64))  # the client's address


class WebhookDeadLetter(Base):
    """A webhook event the sender gave up on: out of attempts, refused for good, lost from
    an overflowing queue, or still undelivered when the service stopped. It keeps the exact
    CloudEvent body (verdict data, never audio or a signature) so that an admin can send
    it again; ``delivered_at`` is set once a re-sent copy was taken."""

    __tablename__ = "webhook_dead_letters"
    __table_args__ = (Index("ix_webhook_dead_letters_url", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(256), index=True)
    body: Mapped[str] = mapped_column(Text)  # the CloudEvent JSON, exactly as it was sent
    attempts: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))  # out_of_attempts, refused, shutdown, ...
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's last answer
    problem: Mapped[str | None] = mapped_column(String(512))  # or why there was none
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retried_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]


class CallRecording(Base):
    """One stretch of a call participant's audio kept on disk (a call resumed after it
    ended adds another): the index of the sealed files ``<recording_id>.raw`` (the PCM as
    received) and, for calls not at 16 kHz, ``<recording_id>.16k``. The files are sealed
    under a key of their own, held here sealed under the voiceprint key (``key_id``), so
    that rotating that key re-seals this row and not the audio. Keyed by ids, as verdicts
    are; ``speaker_id`` is whom the participant claimed or enrolled as, for deletion."""

    __tablename__ = "call_recordings"
    __table_args__ = (Index("ix_call_recordings_call", "call_id", "participant_raw_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[str] = mapped_column(String(36), unique=True)
    call_id: Mapped[str] = mapped_column(String(256))
    participant_raw_id: Mapped[str] = mapped_column(String(256))
    speaker_id: Mapped[str | None] = mapped_column(String(128), index=True)
    sample_rate: Mapped[int] = mapped_column(Integer)  # of the raw PCM
    status: Mapped[str] = mapped_column(String(16))  # recording, complete, failed
    raw_bytes: Mapped[int] = mapped_column(Integer, default=0)
    wav_bytes: Mapped[int] = mapped_column(Integer, default=0)  # of 16 kHz samples
    dropped_bytes: Mapped[int] = mapped_column(Integer, default=0)  # behind a slow disk
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    problem: Mapped[str | None] = mapped_column(String(512))  # why it failed
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[datetime | None]


class CallRecordingSetting(Base):
    """An admin's choice to record one call, or not, whatever BIOMETRICS_RECORDINGS says."""

    __tablename__ = "call_recording_settings"

    call_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    enabled: Mapped[bool]
    set_by: Mapped[str] = mapped_column(String(64))  # the admin key id
    set_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
