"""Hostile input on the ACS socket, generated: whatever a peer sends, the parser returns a
typed value, drops and counts the frame, or asks to close with 1007/1008 and a reason that
fits a close frame. Never another exception, never a counter out of step."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.hostile.properties import AFTER_METADATA, FIRST_MESSAGE, ROUND_TRIP


@settings(
    max_examples=AFTER_METADATA.ci_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(*AFTER_METADATA.arguments)
def test_anything_after_the_metadata_is_parsed_dropped_or_closes(messages: list[str]) -> None:
    AFTER_METADATA.check(messages)


@settings(max_examples=FIRST_MESSAGE.ci_examples, deadline=None)
@given(*FIRST_MESSAGE.arguments)
def test_anything_as_the_first_message_is_metadata_or_closes(messages: list[str]) -> None:
    FIRST_MESSAGE.check(messages)


@settings(max_examples=ROUND_TRIP.ci_examples, deadline=None)
@given(*ROUND_TRIP.arguments)
def test_every_frame_the_encoder_writes_parses_back_unchanged(
    pcm: bytes, raw_id: str | None, silent: bool
) -> None:
    ROUND_TRIP.check(pcm, raw_id, silent)
