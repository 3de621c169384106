"""When a live call's participant is judged. Numbers in, numbers out.

The schedule, in net speech (silence never counts): nothing is scored before
``minimum`` seconds (the verdict says NOT_ENOUGH_SPEECH); then a verdict at the minimum and
one every ``step`` seconds of further speech, each on all the speech so far; the one at
``maximum`` is final, and no speech is buffered past it. With the defaults (3, 2, 10):
verdicts at 3, 5, 7, 9 and 10 s. A verdict on a claim also comes at once when the claim is
made, saying what can be said without enough speech (e.g. SPEAKER_NOT_ENROLLED). What a
verdict decides is the verification service's business, never the schedule's.
"""

from __future__ import annotations

import dataclasses

from biometrics.audio.framing import frames_for


@dataclasses.dataclass(frozen=True)
class DecisionSchedule:
    """The schedule in frames of speech, so that no float ever misses a step."""

    min_frames: int
    step_frames: int
    max_frames: int

    @classmethod
    def of_seconds(cls, minimum: float, step: float, maximum: float) -> DecisionSchedule:
        return cls(frames_for(minimum), frames_for(step), frames_for(maximum))

    def next_due(self, evaluated_frames: int) -> int | None:
        """Speech frames at which the next verdict is due, after one on ``evaluated_frames``;
        None when that one was final."""
        if evaluated_frames < self.min_frames:
            return self.min_frames
        if evaluated_frames >= self.max_frames:
            return None
        return min(evaluated_frames + self.step_frames, self.max_frames)

    def enough(self, frames: int) -> bool:
        return frames >= self.min_frames

    def is_final(self, frames: int) -> bool:
        return frames >= self.max_frames
