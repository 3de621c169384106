"""Hostile requests, generated: JSON and multipart bodies of any shape on the routes that
read them get a 2xx or a JSON 4xx, never a 5xx, and leave the service answering."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.hostile.properties import CLAIM_BODY, SPEAKER_BODY, VERIFY_FORM

SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=SPEAKER_BODY.ci_examples, deadline=None, suppress_health_check=SUPPRESS)
@given(*SPEAKER_BODY.arguments)
def test_any_speaker_body_is_created_or_refused(client, body) -> None:
    SPEAKER_BODY.check(client, body)


@settings(max_examples=CLAIM_BODY.ci_examples, deadline=None, suppress_health_check=SUPPRESS)
@given(*CLAIM_BODY.arguments)
def test_any_claim_body_is_taken_or_refused(client, body, raw_id) -> None:
    CLAIM_BODY.check(client, body, raw_id)


@settings(max_examples=VERIFY_FORM.ci_examples, deadline=None, suppress_health_check=SUPPRESS)
@given(*VERIFY_FORM.arguments)
def test_any_verify_form_is_judged_or_refused(client, fields, audio, content_type) -> None:
    VERIFY_FORM.check(client, fields, audio, content_type)
