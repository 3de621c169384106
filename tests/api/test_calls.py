"""The live-call REST API (biometrics.api.calls) in-process, on SQLite and PostgreSQL: claims,
call and participant progress, verdict history, events, and enrollment from a call."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from tests.api.helpers import enroll
from tests.streaming.helpers import (
    assert_follows_schedule,
    call_messages,
    live_settings,
    parse_sse,
    voice,
)

CALLER = "4:+14255550123"
AGENT = "8:acs:agent/1"  # a "/" in a raw id survives the URL encoding


@pytest.fixture
def settings(settings):
    return live_settings(settings)


def path(call_id: str, raw_id: str | None = None, *rest: str) -> str:
    parts = ["/v1/calls", call_id]
    if raw_id is not None:
        parts += ["participants", urllib.parse.quote(raw_id, safe="")]
    return "/".join([*parts, *rest])


def stream(client, call_id: str, participants: dict, *, rate: int = 16_000) -> None:
    """A whole call over the socket; returns once the call has ended."""
    messages = call_messages(participants, rate)
    headers = {"x-ms-call-connection-id": call_id}
    with client.websocket_connect("/ws/acs", headers=headers) as socket:
        for message in messages:
            socket.send_text(message)
        wait_until(client, call_id, lambda call: call["counters"].get("frames") == len(messages))
    wait_until(client, call_id, lambda call: call["status"] == "ENDED")


def wait_until(client, call_id: str, done, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path(call_id))
        if response.status_code == 200 and done(response.json()):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"call {call_id} never got there: {response.json()}")
        time.sleep(0.02)


def test_a_claim_before_the_audio_creates_a_pending_call(client):
    assert enroll(client, "alice").status_code == 201
    claimed = client.put(path("call-1", CALLER, "claim"), json={"speaker_id": "alice"})
    assert claimed.status_code == 200
    body = claimed.json()
    assert (body["call_id"], body["call_status"], body["participant_raw_id"]) == (
        "call-1",
        "PENDING",
        CALLER,
    )
    assert body["claim"] == {"speaker_id": "alice", "threshold": None, "source": "api"}
    call = wait_until(client, "call-1", lambda c: c["participants"][0]["latest_verdict"])
    assert call["status"] == "PENDING" and call["started_at"] is None
    verdict = call["participants"][0]["latest_verdict"]
    assert (verdict["decision"], verdict["speech_seconds"]) == ("NOT_ENOUGH_SPEECH", 0.0)
    assert client.get(path("call-1", CALLER)).json()["latest_verdict"] == verdict
    history = client.get(path("call-1", CALLER, "verdicts")).json()["verdicts"]
    assert history == [verdict]


def test_claims_name_a_known_speaker_and_a_threshold_from_0_to_100(client):
    unknown = client.put(path("c", CALLER, "claim"), json={"speaker_id": "nobody"})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": "speaker_not_found",
        "detail": "speaker 'nobody' does not exist",
    }
    enroll(client, "alice")
    for threshold in (-1, 101, "high", True):
        bad = client.put(
            path("c", CALLER, "claim"), json={"speaker_id": "alice", "threshold": threshold}
        )
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    assert client.put(path("c", CALLER, "claim"), json=["alice"]).status_code == 400
    assert client.get(path("c")).status_code == 404  # nothing was created


def test_unknown_calls_and_participants_are_404(client):
    missing = client.get(path("nope"))
    assert missing.status_code == 404 and missing.json()["error"] == "call_not_found"
    assert client.get(path("nope", CALLER, "verdicts")).json()["error"] == "call_not_found"
    assert client.get("/v1/calls/nope/events").status_code == 404
    enroll(client, "alice")
    client.put(path("c", CALLER, "claim"), json={"speaker_id": "alice"})
    for url in (path("c", AGENT), path("c", AGENT, "verdicts")):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json()["error"] == "participant_not_found"


def test_a_call_with_claims_gets_verdicts_by_the_schedule_and_keeps_their_history(client):
    enroll(client, "alice")
    enroll(client, "bob", seed=5)
    client.put(path("c2", CALLER, "claim"), json={"speaker_id": "alice", "threshold": 0})
    client.put(path("c2", AGENT, "claim"), json={"speaker_id": "bob", "threshold": 100})
    stream(client, "c2", {CALLER: voice(4.5, "a", seed=1), AGENT: voice(4.5, "b", seed=2)})

    for raw_id, decision in ((CALLER, "ACCEPT"), (AGENT, "REJECT")):
        history = client.get(path("c2", raw_id, "verdicts")).json()["verdicts"]
        assert history[0]["decision"] == "NOT_ENOUGH_SPEECH"
        assert {v["decision"] for v in history[1:]} == {decision}
        assert_follows_schedule(history)
        assert all(0 <= v["score"] <= 100 for v in history[1:])
        assert len({v["verdict_id"] for v in history}) == len(history)
        participant = client.get(path("c2", raw_id)).json()
        assert participant["latest_verdict"] == history[-1]
        assert participant["net_speech_seconds"] > 3.0
    latest = client.get(path("c2", CALLER, "verdicts"), params={"limit": 1}).json()
    assert [v["final"] for v in latest["verdicts"]] == [True]

    # Every live verdict leaves its audit row, by the service, naming call and participant.
    audited = client.get("/v1/audit", params={"action": "call.verdict", "limit": 500}).json()
    for raw_id, speaker_id in ((CALLER, "alice"), (AGENT, "bob")):
        history = client.get(path("c2", raw_id, "verdicts")).json()["verdicts"]
        mine = [row for row in audited["entries"] if row["participant_raw_id"] == raw_id]
        assert [(row["actor"], row["subject"], row["call_id"], row["outcome"]) for row in mine] == [
            ("service", speaker_id, "c2", verdict["decision"]) for verdict in history
        ]


def test_the_events_of_a_call_replay_as_server_sent_events(client):
    enroll(client, "alice")
    client.put(path("c3", CALLER, "claim"), json={"speaker_id": "alice"})
    stream(client, "c3", {CALLER: voice(4.0, seed=3)})
    with client.stream("GET", "/v1/calls/c3/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    kinds = [kind for _, kind, _ in events]
    assert kinds.index("call.started") < kinds.index("participant.joined")
    assert kinds[-1] == "call.ended" and kinds.count("call.ended") == 1
    verdicts = [data for _, kind, data in events if kind == "verdict.changed"]
    assert verdicts[0]["decision"] == "NOT_ENOUGH_SPEECH"
    assert_follows_schedule(verdicts)
    ended = events[-1][2]
    assert ended["status"] == "ENDED"
    assert ended["participants"][0]["latest_verdict"]["final"] is True
    replay = client.get("/v1/calls/c3/events", headers={"last-event-id": events[-2][0]})
    assert [kind for _, kind, _ in parse_sse(replay.text)] == ["call.ended"]


def test_enrollment_from_a_call_reaches_enrolled(client):
    messages = call_messages({CALLER: voice(7.0, "c", seed=4)})
    with client.websocket_connect("/ws/acs", headers={"x-ms-call-connection-id": "c4"}) as socket:
        for message in messages[:101]:  # 2 s of the caller
            socket.send_text(message)
        wait_until(client, "c4", lambda call: call["counters"].get("frames") == 101)
        started = client.post(path("c4", CALLER, "enroll"), json={"speaker_id": "carol"})
        assert started.status_code == 200
        assert started.json()["enrollment"]["status"] == "PENDING_ENROLLMENT"
        assert client.get("/v1/speakers/carol").json()["status"] == "PENDING_ENROLLMENT"
        for message in messages[101:]:
            socket.send_text(message)
        wait_until(client, "c4", lambda call: call["counters"].get("frames") == len(messages))
    call = wait_until(
        client, "c4", lambda call: call["participants"][0]["enrollment"]["status"] == "ENROLLED"
    )
    enrollment = call["participants"][0]["enrollment"]
    assert enrollment["active"] is False and enrollment["remaining_speech_seconds"] == 0.0
    speaker = client.get("/v1/speakers/carol").json()
    assert speaker["status"] == "ENROLLED" and speaker["enrolled_speech_seconds"] >= 4.0
    audited = client.get("/v1/audit", params={"action": "speaker.enroll"}).json()["entries"]
    assert [
        (row["subject"], row["call_id"], row["participant_raw_id"], row["outcome"])
        for row in audited
    ] == [("carol", "c4", CALLER, "ok")]


def test_enrollment_from_a_call_is_refused_when_it_cannot_work(client):
    client.post("/v1/speakers/dave/opt-out")
    enroll(client, "alice")
    client.put(path("c5", CALLER, "claim"), json={"speaker_id": "alice"})
    opted_out = client.post(path("c5", CALLER, "enroll"), json={"speaker_id": "dave"})
    assert opted_out.status_code == 409 and opted_out.json()["error"] == "speaker_opted_out"
    waiting = client.post(path("c5", CALLER, "enroll"), json={"speaker_id": "erin"})
    assert waiting.status_code == 202  # no speech yet: it starts as the speech arrives
    other = client.post(path("c5", CALLER, "enroll"), json={"speaker_id": "frank"})
    assert other.status_code == 409 and other.json()["error"] == "enrollment_in_progress"
    unknown = client.post(path("c5", AGENT, "enroll"), json={"speaker_id": "erin"})
    assert unknown.status_code == 404
    assert (
        client.post(path("nope", CALLER, "enroll"), json={"speaker_id": "erin"}).status_code == 404
    )
