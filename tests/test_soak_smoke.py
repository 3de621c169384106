"""The fault soak, small: two calls against a real `biometrics serve` subprocess (the
suite's small model, generated voices) with one abrupt disconnect, malformed frames in a
call and on throwaway sockets, and the webhook receiver down; nothing may be lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from biometrics.soak import CLEAN_EXITS, EXPECTED_OUTCOMES, SoakOptions, run
from tests.voices import synthetic_speech, wav_bytes

VOICES = {"ada": (110.0, (650.0, 1100.0, 2400.0)), "bo": (180.0, (800.0, 1400.0, 2700.0))}


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    """Two generated speakers: four 8 s files to enroll (the service wants 20 s of speech),
    then two for the calls."""
    root = tmp_path / "speech"
    for index, (name, (pitch, formants)) in enumerate(VOICES.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for file in range(6):
            samples = synthetic_speech(
                8.0, pitch_hz=pitch, formants=formants, seed=10 * index + file
            )
            (folder / f"{name}-{file}.wav").write_bytes(wav_bytes(samples))
    return root


def test_a_short_soak_with_every_sqlite_fault_loses_nothing(speech: Path, model_folder: Path):
    report = run(
        SoakOptions(
            speech=speech,
            calls=2,
            minutes=0.01,  # one wave
            speed=4.0,
            speakers=2,
            call_seconds=12.0,
            model=str(model_folder),
            webhook_outage_seconds=2.0,
        ),
        progress=lambda line: None,
    )
    assert report.ok, report.table()
    assert report.calls == 2 and report.waves == 1
    assert report.faults == {"disconnect": 1, "malformed": 1 + len(EXPECTED_OUTCOMES), "webhook": 1}
    # The disconnected call resumed on a second socket; the other kept its socket through
    # its bad message (bad JSON, the first kind).
    assert report.sockets == 3
    assert report.frames_sent == report.frames_processed > 0
    assert report.verdicts_produced == report.verdicts_persisted > 0
    assert report.events_produced == report.webhooks_delivered > 0
    assert report.webhook_refused > 0  # the receiver really was down for some deliveries
    for kind, outcomes in report.malformed_outcomes.items():
        assert set(outcomes) == {EXPECTED_OUTCOMES[kind]}, (kind, outcomes)
    assert report.dead_letters is None or report.dead_letters == 0
    assert report.server_exit_code in CLEAN_EXITS
    assert set(report.lost.values()) == {0}
