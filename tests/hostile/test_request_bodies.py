"""Hostile requests, generated: JSON and multipart bodies of any shape on the routes that
read them get a 2xx or a JSON 4xx, never a 5xx, and leave the service answering."""

from __future__ import annotations

import json
import urllib.parse

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.test_acs_messages import json_values

SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
speaker_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "speaker_id": st.one_of(json_values, st.from_regex(r"[A-Za-z0-9][\w.:@+-]{0,130}")),
            "display_name": json_values,
            "aliases": st.one_of(json_values, st.lists(json_values, max_size=20)),
            "expires_at": st.one_of(json_values, st.just("2999-01-01T00:00:00Z")),
        },
    ),
)
claim_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"speaker_id": json_values, "threshold": json_values}),
)


def assert_answered(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"} and body["detail"]


@settings(max_examples=700, deadline=None, suppress_health_check=SUPPRESS)
@given(speaker_bodies)
def test_any_speaker_body_is_created_or_refused(client, body) -> None:
    assert_answered(client.post("/v1/speakers", content=json.dumps(body)))


@settings(max_examples=500, deadline=None, suppress_health_check=SUPPRESS)
@given(
    claim_bodies,
    st.text(min_size=1, max_size=40),
)
def test_any_claim_body_is_taken_or_refused(client, body, raw_id) -> None:
    path = f"/v1/calls/fuzz/participants/{urllib.parse.quote(raw_id, safe='')}/claim"
    assert_answered(client.put(path, content=json.dumps(body)))


@settings(max_examples=500, deadline=None, suppress_health_check=SUPPRESS)
@given(
    st.dictionaries(
        st.sampled_from(
            ["speaker_id", "threshold", "format", "sample_rate", "channels", "channel"]
        ),
        st.text(max_size=12),
    ),
    st.binary(max_size=1024),
    st.sampled_from(["audio/wav", "audio/pcm", "application/octet-stream", "text/plain", ""]),
)
def test_any_verify_form_is_judged_or_refused(client, fields, audio, content_type) -> None:
    response = client.post(
        "/v1/verify", data=fields, files={"audio": ("a.wav", audio, content_type)}
    )
    assert_answered(response)
    assert client.get("/healthz").status_code == 200
