"""The queries the service runs, each taking an open session."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from biometrics.clock import utcnow
from biometrics.errors import SpeakerExists, SpeakerNotFound
from biometrics.statuses import SpeakerStatus
from biometrics.store.crypto import Cipher
from biometrics.store.lifecycle import last_used_at
from biometrics.store.models import (
    Call,
    CallParticipant,
    ScoreCalibration,
    ScoreCohort,
    Speaker,
    SpeakerAlias,
    VerdictRecord,
)

_WITH_DETAILS = (selectinload(Speaker.aliases), selectinload(Speaker.voiceprint))


def find_speaker(session: Session, speaker_id: str, *, for_update: bool = False) -> Speaker | None:
    query = select(Speaker).where(Speaker.speaker_id == speaker_id).options(*_WITH_DETAILS)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def find_speaker_by_alias(session: Session, alias: str) -> Speaker | None:
    query = (
        select(Speaker)
        .join(SpeakerAlias, SpeakerAlias.speaker_pk == Speaker.id)
        .where(SpeakerAlias.alias == alias)
        .options(*_WITH_DETAILS)
    )
    return session.scalars(query).one_or_none()


def get_speaker(session: Session, speaker_id: str, *, for_update: bool = False) -> Speaker:
    speaker = find_speaker(session, speaker_id, for_update=for_update)
    if speaker is None:
        raise SpeakerNotFound(f"speaker {speaker_id!r} does not exist")
    return speaker


def create_speaker(
    session: Session,
    speaker_id: str,
    display_name: str | None = None,
    aliases: Sequence[str] = (),
    status: SpeakerStatus = SpeakerStatus.PENDING_ENROLLMENT,
    expires_at: datetime | None = None,
) -> Speaker:
    """Insert a speaker; raises :class:`SpeakerExists` if the id or an alias is taken."""
    if find_speaker(session, speaker_id) is not None:
        raise SpeakerExists(f"speaker {speaker_id!r} already exists")
    taken = session.scalars(select(SpeakerAlias.alias).where(SpeakerAlias.alias.in_(aliases))).all()
    if taken:
        raise SpeakerExists(f"alias(es) already belong to another speaker: {', '.join(taken)}")
    speaker = Speaker(
        speaker_id=speaker_id,
        display_name=display_name,
        status=status,
        expires_at=expires_at,
        aliases=[SpeakerAlias(alias=alias) for alias in aliases],
        voiceprint=None,
    )
    session.add(speaker)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request won the race
        raise SpeakerExists(
            f"speaker {speaker_id!r} or one of its aliases already exists"
        ) from None
    return speaker


def list_speakers(
    session: Session, *, after: str | None, limit: int, containing: str | None = None
) -> list[Speaker]:
    """One page of speakers ordered by speaker_id, starting after the given cursor; with
    ``containing``, only those whose id or display name holds that text (any case)."""
    query = select(Speaker).options(*_WITH_DETAILS).order_by(Speaker.speaker_id).limit(limit)
    if after is not None:
        query = query.where(Speaker.speaker_id > after)
    if containing:
        escaped = containing.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(
            or_(
                Speaker.speaker_id.ilike(pattern, escape="\\"),
                Speaker.display_name.ilike(pattern, escape="\\"),
            )
        )
    return list(session.scalars(query))


def delete_speaker(session: Session, speaker_id: str) -> None:
    """Delete a speaker with their aliases, voiceprint and records, and every verdict given
    on claims of them (uploaded or live)."""
    session.delete(get_speaker(session, speaker_id, for_update=True))
    session.execute(delete(VerdictRecord).where(VerdictRecord.speaker_id == speaker_id))


def touch_speaker(session: Session, speaker_id: str) -> None:
    """Mark the speaker as used now (an ACCEPT; enrollment sets it itself), which keeps them
    from expiring; nothing when there is no such speaker."""
    session.execute(
        update(Speaker).where(Speaker.speaker_id == speaker_id).values(last_accessed_at=utcnow())
    )


@dataclasses.dataclass(frozen=True)
class StoredClaim:
    """What a verification needs to know about a claimed speaker."""

    status: SpeakerStatus
    voiceprint: npt.NDArray[np.float32] | None
    voiceprint_model: str | None  # source@sha256, for people
    voiceprint_sha256: str | None
    expires_at: datetime | None
    last_used_at: datetime  # enrollment or ACCEPT (biometrics.store.lifecycle)
    lockout_cleared_at: datetime | None


def load_claim(session: Session, cipher: Cipher, speaker_id: str) -> StoredClaim | None:
    """The claimed speaker's status and voiceprint (decrypted); None when there is no such
    speaker."""
    speaker = find_speaker(session, speaker_id)
    if speaker is None:
        return None
    voiceprint = speaker.voiceprint
    return StoredClaim(
        status=speaker.status,
        voiceprint=None if voiceprint is None else voiceprint.embedding(cipher, speaker_id),
        voiceprint_model=None
        if voiceprint is None
        else f"{voiceprint.model_source}@sha256:{voiceprint.model_sha256[:12]}",
        voiceprint_sha256=None if voiceprint is None else voiceprint.model_sha256,
        expires_at=speaker.expires_at,
        last_used_at=last_used_at(speaker),
        lockout_cleared_at=speaker.lockout_cleared_at,
    )


@dataclasses.dataclass(frozen=True)
class StoredCohort:
    embeddings: npt.NDArray[np.float32]  # (n, dim) unit vectors
    top_n: int


@dataclasses.dataclass(frozen=True)
class StoredCalibration:
    slope: float
    intercept: float
    normalized: bool
    thresholds: dict[float, float]  # false-accept rate -> 0-100 threshold
    # The calibration's format and, from format 2, its duration model as the scoring code
    # writes it; the store keeps both as given and leaves reading them to the scoring code.
    format: int = 1
    duration: dict[str, Any] | None = None


def load_cohort(session: Session, cipher: Cipher, model_sha256: str) -> StoredCohort | None:
    row = session.scalars(
        select(ScoreCohort).where(ScoreCohort.model_sha256 == model_sha256)
    ).one_or_none()
    return None if row is None else StoredCohort(row.embeddings(cipher), row.top_n)


def load_calibration(session: Session, model_sha256: str) -> StoredCalibration | None:
    row = session.scalars(
        select(ScoreCalibration).where(ScoreCalibration.model_sha256 == model_sha256)
    ).one_or_none()
    if row is None:
        return None
    return StoredCalibration(
        slope=row.slope,
        intercept=row.intercept,
        normalized=row.normalized,
        thresholds={float(far): value for far, value in row.thresholds.items()},
        format=row.format,
        duration=row.duration,
    )


def save_cohort(
    session: Session,
    cipher: Cipher,
    model_sha256: str,
    embeddings: npt.NDArray[np.float32],
    top_n: int,
    description: str,
) -> None:
    """Store the model's cohort, encrypted, replacing any earlier one."""
    session.execute(delete(ScoreCohort).where(ScoreCohort.model_sha256 == model_sha256))
    row = ScoreCohort(model_sha256=model_sha256, description=description, top_n=top_n)
    row.seal(cipher, embeddings)
    session.add(row)


def save_calibration(
    session: Session,
    model_sha256: str,
    calibration: StoredCalibration,
    *,
    description: str,
    eer: float,
    target_trials: int,
    nontarget_trials: int,
) -> None:
    """Store the model's calibration, replacing any earlier one."""
    session.execute(delete(ScoreCalibration).where(ScoreCalibration.model_sha256 == model_sha256))
    session.add(
        ScoreCalibration(
            model_sha256=model_sha256,
            format=calibration.format,
            duration=calibration.duration,
            slope=calibration.slope,
            intercept=calibration.intercept,
            normalized=calibration.normalized,
            thresholds={str(far): value for far, value in calibration.thresholds.items()},
            description=description,
            eer=eer,
            target_trials=target_trials,
            nontarget_trials=nontarget_trials,
        )
    )


# --- live calls ---------------------------------------------------------------------------------


def find_call(session: Session, call_id: str) -> Call | None:
    query = select(Call).where(Call.call_id == call_id).options(selectinload(Call.participants))
    return session.scalars(query).one_or_none()


def find_call_participant(session: Session, call: Call, raw_id: str) -> CallParticipant | None:
    return next((p for p in call.participants if p.raw_id == raw_id), None)
