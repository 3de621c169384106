"""The queries the service runs, each taking an open session."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from biometrics.errors import SpeakerExists, SpeakerNotFound
from biometrics.store.models import Speaker, SpeakerAlias, SpeakerStatus, utcnow

_WITH_DETAILS = (selectinload(Speaker.aliases), selectinload(Speaker.voiceprint))


def find_speaker(session: Session, speaker_id: str, *, for_update: bool = False) -> Speaker | None:
    query = select(Speaker).where(Speaker.speaker_id == speaker_id).options(*_WITH_DETAILS)
    if for_update:
        query = query.with_for_update()
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


def list_speakers(session: Session, *, after: str | None, limit: int) -> list[Speaker]:
    """One page of speakers ordered by speaker_id, starting after the given cursor."""
    query = select(Speaker).options(*_WITH_DETAILS).order_by(Speaker.speaker_id).limit(limit)
    if after is not None:
        query = query.where(Speaker.speaker_id > after)
    return list(session.scalars(query))


def touch(speaker: Speaker) -> None:
    speaker.last_accessed_at = utcnow()
