"""biometrics.streaming.schedule: when live verdicts come, in frames of speech."""

from __future__ import annotations

from biometrics.audio.framing import frames_for
from biometrics.streaming.schedule import DecisionSchedule


def test_the_default_schedule_is_3_5_7_9_and_10_seconds():
    schedule = DecisionSchedule.of_seconds(3.0, 2.0, 10.0)
    due, points = 0, []
    while (due := schedule.next_due(due)) is not None:
        points.append(due)
    assert points == [150, 250, 350, 450, 500]
    assert schedule.is_final(500) and not schedule.is_final(499)
    assert not schedule.enough(149) and schedule.enough(150)


def test_a_verdict_late_for_its_step_moves_the_next_one_on():
    schedule = DecisionSchedule(150, 100, 500)
    assert schedule.next_due(0) == 150  # e.g. after SPEAKER_NOT_ENROLLED on no speech
    assert schedule.next_due(170) == 270
    assert schedule.next_due(480) == 500
    assert schedule.next_due(500) is None


def test_seconds_become_whole_frames_without_float_surprises():
    assert [frames_for(s) for s in (3.0, 0.3, 2.01, 10.0)] == [150, 15, 101, 500]
    assert DecisionSchedule.of_seconds(1.0, 2.0, 1.0).next_due(50) is None
