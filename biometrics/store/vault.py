"""Encryption at rest, on the database's side: the configured keys checked at start, the
plain vectors of an older database encrypted, and every vector re-encrypted under a new key.

Revision 0006 adds the ``key_id`` columns and the ``encryption_keys`` table but cannot read
the keys, so it leaves existing vectors plain (``key_id`` NULL). :func:`open_vault`, run by
every command that reads vectors (``serve`` first of all), encrypts those before anything
else happens: no plain vector is left once the service has started.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, attributes

from biometrics.errors import ConfigError, VoiceprintUnreadable
from biometrics.store.crypto import KEY_FILE_VARIABLE, KEY_VARIABLE, OLD_KEYS_VARIABLE, Cipher
from biometrics.store.database import Database
from biometrics.store.models import (
    CallRecording,
    EncryptionKey,
    ScoreCohort,
    Speaker,
    Voiceprint,
)
from biometrics.store.recordings import recording_key_aad

logger = logging.getLogger(__name__)

BATCH_SIZE = 200


@dataclasses.dataclass(frozen=True)
class Progress:
    table: str  # "voiceprints", "cohorts" or "recordings"
    done: int
    total: int


Report = Callable[[Progress], None]


@dataclasses.dataclass(frozen=True)
class Rekeyed:
    voiceprints: int
    cohorts: int
    recordings: int = 0  # call recordings' data keys re-sealed (their audio is not rewritten)


def open_vault(database: Database, cipher: Cipher) -> Cipher:
    """Check ``cipher``'s keys against the database and encrypt any plain vector; a
    :class:`ConfigError` naming the key when a key is wrong or missing."""
    _check_keys(database, cipher)
    sealed = reencrypt(database, cipher, only_plain=True)
    if sealed.voiceprints or sealed.cohorts:
        logger.info(
            "encrypted the plain voiceprints and cohorts of an older database",
            extra={"voiceprints": sealed.voiceprints, "cohorts": sealed.cohorts},
        )
    return cipher


def reencrypt(
    database: Database,
    cipher: Cipher,
    *,
    only_plain: bool = False,
    batch_size: int = BATCH_SIZE,
    report: Report | None = None,
) -> Rekeyed:
    """Seal every voiceprint and cohort not under the current key yet (with
    ``only_plain``, only the plain ones), ``batch_size`` rows per transaction. Rows already
    under the current key are skipped, so a run that was interrupted resumes. Call
    recordings' data keys are re-sealed too (never plain, so not with ``only_plain``)."""
    voiceprint_stale = _stale(Voiceprint.key_id, cipher.key_id, only_plain)
    cohort_stale = _stale(ScoreCohort.key_id, cipher.key_id, only_plain)
    return Rekeyed(
        voiceprints=_batches(
            database,
            "voiceprints",
            _count(database, Voiceprint, voiceprint_stale),
            lambda session: _rekey_voiceprints(session, cipher, voiceprint_stale, batch_size),
            report,
        ),
        cohorts=_batches(
            database,
            "cohorts",
            _count(database, ScoreCohort, cohort_stale),
            lambda session: _rekey_cohorts(session, cipher, cohort_stale, batch_size),
            report,
        ),
        recordings=0
        if only_plain
        else _batches(
            database,
            "recordings",
            _count(database, CallRecording, CallRecording.key_id != cipher.key_id),
            lambda session: _rekey_recordings(session, cipher, batch_size),
            report,
        ),
    )


def _check_keys(database: Database, cipher: Cipher) -> None:
    with database.session() as session:
        stored = {row.key_id: row.check_value for row in session.scalars(select(EncryptionKey))}
        for key_id in cipher.keyring.keys:
            if key_id in stored and not cipher.checks(key_id, stored[key_id]):
                raise ConfigError(
                    f"encryption key {key_id} does not open the check value the database "
                    "keeps for it: it is not the key the voiceprints were sealed with"
                )
        in_use = {
            key_id
            for table in (Voiceprint, ScoreCohort, CallRecording)
            for key_id in session.scalars(
                select(table.key_id).where(table.key_id.is_not(None)).distinct()
            )
        }
    unknown = sorted(key_id for key_id in in_use if key_id is not None and not cipher.knows(key_id))
    if unknown:
        configured = ", ".join(cipher.keyring.keys)
        raise ConfigError(
            f"voiceprints are encrypted under key {', '.join(unknown)}, which is not "
            f"configured (the configured keys are {configured}): set {KEY_VARIABLE} or "
            f"{KEY_FILE_VARIABLE} to the key they were sealed with, or keep it in "
            f"{OLD_KEYS_VARIABLE} while `biometrics keys rotate-voiceprints` moves them to "
            "the new one. Without it those voiceprints cannot be read"
        )
    if cipher.key_id not in stored:
        try:
            with database.session() as session:
                session.add(EncryptionKey(key_id=cipher.key_id, check_value=cipher.check_value()))
        except IntegrityError:  # another process registered it meanwhile
            pass


def _stale(
    column: InstrumentedAttribute[str | None], key_id: str, only_plain: bool
) -> ColumnElement[bool]:
    if only_plain:
        return column.is_(None)
    return or_(column.is_(None), column != key_id)


def _count(
    database: Database,
    table: type[Voiceprint] | type[ScoreCohort] | type[CallRecording],
    stale: ColumnElement[bool],
) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(table).where(stale)) or 0


def _batches(
    database: Database,
    table: str,
    total: int,
    batch: Callable[[Session], int],
    report: Report | None,
) -> int:
    done = 0
    while True:
        with database.session() as session:  # one transaction per batch
            count = batch(session)
        if not count:
            return done
        done += count
        if report is not None:
            report(Progress(table, done, max(total, done)))


def _rekey_voiceprints(
    session: Session, cipher: Cipher, stale: ColumnElement[bool], limit: int
) -> int:
    rows = session.execute(
        select(Voiceprint, Speaker.speaker_id)
        .join(Speaker, Speaker.id == Voiceprint.speaker_pk)
        .where(stale)
        .order_by(Voiceprint.id)
        .limit(limit)
        .with_for_update(of=Voiceprint)
    ).all()
    for voiceprint, speaker_id in rows:
        if voiceprint.key_id is None:
            vector = _plain(voiceprint.vector, (voiceprint.dimension,), speaker_id)
        else:
            vector = voiceprint.embedding(cipher, speaker_id)
        voiceprint.seal(cipher, speaker_id, voiceprint.model_sha256, vector)
        # The voice did not change: keep updated_at as it is rather than stamp it now.
        attributes.flag_modified(voiceprint, "updated_at")
    return len(rows)


def _rekey_cohorts(session: Session, cipher: Cipher, stale: ColumnElement[bool], limit: int) -> int:
    rows = session.scalars(
        select(ScoreCohort).where(stale).order_by(ScoreCohort.id).limit(limit).with_for_update()
    ).all()
    for cohort in rows:
        if cohort.key_id is None:
            matrix = _plain(cohort.vectors, (cohort.size, cohort.dimension), cohort.model_sha256)
        else:
            matrix = cohort.embeddings(cipher)
        cohort.seal(cipher, matrix)
    return len(rows)


def _rekey_recordings(session: Session, cipher: Cipher, limit: int) -> int:
    rows = session.scalars(
        select(CallRecording)
        .where(CallRecording.key_id != cipher.key_id)
        .order_by(CallRecording.id)
        .limit(limit)
        .with_for_update()
    ).all()
    for row in rows:
        aad = recording_key_aad(row.recording_id)
        data_key = cipher.open(row.key_id, row.sealed_key, aad, f"recording {row.recording_id}")
        row.key_id, row.sealed_key = cipher.seal(data_key, aad)
    return len(rows)


def _plain(data: bytes, shape: tuple[int, ...], owner: str) -> npt.NDArray[np.float32]:
    if len(data) != 4 * int(np.prod(shape)):
        raise VoiceprintUnreadable(
            f"the plain vector of {owner!r} holds {len(data)} bytes, not {shape} float32"
        )
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)
