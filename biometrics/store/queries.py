"""The queries the service runs, each taking an open session."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from biometrics.errors import SpeakerExists, SpeakerNotFound
from biometrics.scoring.calibration import Calibration
from biometrics.scoring.normalization import Cohort
from biometrics.scoring.scorer import Scorer
from biometrics.store.models import (
    Call,
    CallParticipant,
    CallVerdict,
    ScoreCalibration,
    ScoreCohort,
    Speaker,
    SpeakerAlias,
    SpeakerStatus,
    utcnow,
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


def delete_speaker(session: Session, speaker_id: str) -> None:
    """Delete a speaker with their aliases, voiceprint and records, and the verdicts
    live calls gave on claims of them."""
    session.delete(get_speaker(session, speaker_id, for_update=True))
    session.execute(delete(CallVerdict).where(CallVerdict.speaker_id == speaker_id))


def touch(speaker: Speaker) -> None:
    speaker.last_accessed_at = utcnow()


def load_scorer(
    session: Session, model_sha256: str, *, target_far: float, fixed_threshold: float | None
) -> Scorer:
    """The scoring policy stored for a model: its cohort and calibration, if any."""
    cohort_row = session.scalars(
        select(ScoreCohort).where(ScoreCohort.model_sha256 == model_sha256)
    ).one_or_none()
    calibration_row = session.scalars(
        select(ScoreCalibration).where(ScoreCalibration.model_sha256 == model_sha256)
    ).one_or_none()
    cohort = None if cohort_row is None else Cohort(cohort_row.embeddings, cohort_row.top_n)
    calibration = None
    if calibration_row is not None:
        calibration = Calibration(
            slope=calibration_row.slope,
            intercept=calibration_row.intercept,
            normalized=calibration_row.normalized,
            thresholds={float(far): value for far, value in calibration_row.thresholds.items()},
        )
    return Scorer(cohort, calibration, target_far, fixed_threshold)


def save_cohort(session: Session, model_sha256: str, cohort: Cohort, description: str) -> None:
    """Store the model's cohort, replacing any earlier one."""
    session.execute(delete(ScoreCohort).where(ScoreCohort.model_sha256 == model_sha256))
    row = ScoreCohort(model_sha256=model_sha256, description=description, top_n=cohort.top_n)
    row.embeddings = cohort.embeddings
    session.add(row)


def save_calibration(
    session: Session,
    model_sha256: str,
    calibration: Calibration,
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


def latest_call_verdicts(
    session: Session, participant_pks: Sequence[int]
) -> dict[int, CallVerdict]:
    """Each participant's most recent verdict, by participant primary key."""
    if not participant_pks:
        return {}
    newest = (
        select(func.max(CallVerdict.id))
        .where(CallVerdict.participant_pk.in_(participant_pks))
        .group_by(CallVerdict.participant_pk)
    )
    rows = session.scalars(select(CallVerdict).where(CallVerdict.id.in_(newest)))
    return {row.participant_pk: row for row in rows}


def list_call_verdicts(session: Session, participant_pk: int, *, limit: int) -> list[CallVerdict]:
    """A participant's most recent ``limit`` verdicts, oldest first."""
    query = (
        select(CallVerdict)
        .where(CallVerdict.participant_pk == participant_pk)
        .order_by(CallVerdict.id.desc())
        .limit(limit)
    )
    return list(reversed(session.scalars(query).all()))
