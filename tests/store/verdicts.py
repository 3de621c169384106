"""Verdicts for store tests: live ones of one participant, and an upload's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from biometrics.audio.quality import Quality
from biometrics.embedding import ModelIdentity
from biometrics.statuses import Decision
from biometrics.verdicts import CallParticipantRef, Verdict

START = datetime(2024, 11, 15, 19, 16, 12, 925_000, tzinfo=UTC)
IDENTITY = ModelIdentity("fake-model", "0" * 64)


def verdict(
    number: int,
    decision: Decision = Decision.ACCEPT,
    final: bool = False,
    raw_id: str | None = "4:+14255550123",
    speaker_id: str | None = "alice",
) -> Verdict:
    scored = decision.scored
    return Verdict(
        verdict_id=f"00000000-0000-0000-0000-{number:012d}",
        speaker_id=speaker_id,
        decision=decision,
        score=71.3 if scored else None,
        similarity=0.713 if scored else None,
        normalized_score=1.25 if scored else None,
        threshold=30.0,
        calibrated=False,
        speech_seconds=3.0 + number,
        quality=Quality(3.0 + number, 0.0, 21.5, ("LOW_SNR",) if number == 3 else ()),
        model=IDENTITY,
        detail=None if scored else "not yet",
        created_at=START + timedelta(seconds=5 + number),
        participant=None if raw_id is None else CallParticipantRef("call-1", raw_id),
        first_audio_at=None if raw_id is None else START,
        last_audio_at=None if raw_id is None else START + timedelta(seconds=4 + number),
        final=final,
    )
