"""biometrics.streaming.identity: naming a socket's call, and a participant's aliases."""

from __future__ import annotations

from biometrics.streaming.identity import alias_candidates, call_id_problem, socket_identity


def test_the_header_names_the_call_then_the_query_parameter():
    both = socket_identity(
        {"x-ms-call-connection-id": "conn-1", "x-ms-call-correlation-id": "corr-1"},
        {"call_id": "query-1"},
    )
    assert (both.call_id, both.correlation_id) == ("conn-1", "corr-1")
    assert socket_identity({}, {"call_id": "query-1"}).call_id == "query-1"
    assert socket_identity({}, {}).call_id is None  # the subscription id will name it


def test_call_ids_must_be_printable_without_slashes():
    assert call_id_problem("c0ffee-1") is None
    assert call_id_problem("a/b") is not None
    assert call_id_problem("x" * 257) is not None
    assert call_id_problem("tab\there") is not None


def test_a_phone_participant_is_also_known_by_its_number():
    assert alias_candidates("4:+14255550123") == ["4:+14255550123", "+14255550123"]
    assert alias_candidates("8:acs:abc") == ["8:acs:abc"]
