"""biometrics.streaming.endpoint through the application (Starlette's test client): naming
the call, closing on bad input with the documented code, dropping and counting bad
frames, and never touching another call. Protocol behaviour, so SQLite only; the real
server and PostgreSQL are exercised end to end in tests/test_live_call_end_to_end.py."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from biometrics.simulator import call_format
from biometrics.store import Database
from biometrics.streaming import encode_metadata
from tests.streaming.helpers import call_messages, live_settings, voice

ALICE = "8:acs:alice"
METADATA = encode_metadata(call_format(16_000, "sub-9"))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'biometrics.db'}"
    Database(url).upgrade()
    return url


@pytest.fixture
def settings(settings):
    return live_settings(settings)


def call_state(client, call_id: str, status: str = "ENDED", timeout: float = 10.0) -> dict:
    """The call once it reaches ``status`` (a call ends a moment after its socket)."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/calls/{call_id}").json()
        if body.get("status") == status or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def send_all(client, socket, call_id: str, messages: list[str | bytes], sent: int = 0) -> None:
    """Send, then wait until the server has read them all (and the ``sent`` before them):
    leaving the test client's socket cancels the handler at once, which a real peer's
    close never does."""
    for message in messages:
        if isinstance(message, bytes):
            socket.send_bytes(message)
        else:
            socket.send_text(message)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = client.get(f"/v1/calls/{call_id}")
        read = response.json().get("counters", {}).get("frames", 0)
        if response.status_code == 200 and read >= sent + len(messages):
            return
        time.sleep(0.01)
    raise AssertionError(f"the server did not read the messages of call {call_id}")


def audio(timestamp: str = "2024-11-15T19:16:12.925Z", data: object = None, **fields) -> str:
    payload = {"timestamp": timestamp, "participantRawID": ALICE, "silent": False, **fields}
    payload["data"] = base64.b64encode(bytes(640)).decode() if data is None else data
    return json.dumps({"kind": "AudioData", "audioData": payload})


def closed_with(client, messages: list[str | bytes], **connect) -> tuple[int, str]:
    with client.websocket_connect("/ws/acs", **connect) as socket:
        for message in messages:
            if isinstance(message, bytes):
                socket.send_bytes(message)
            else:
                socket.send_text(message)
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_text()
    return closed.value.code, closed.value.reason


def test_a_call_is_named_by_its_header_and_ends_when_its_socket_closes(client):
    headers = {"x-ms-call-connection-id": "call-h", "x-ms-call-correlation-id": "corr-h"}
    with client.websocket_connect("/ws/acs", headers=headers) as socket:
        messages = call_messages({ALICE: voice(1.0), "8:acs:bob": voice(0.5, "b")})
        send_all(client, socket, "call-h", messages)
        live = client.get("/v1/calls/call-h").json()
    assert live["status"] == "ONGOING"
    call = call_state(client, "call-h")
    assert (call["call_id"], call["correlation_id"], call["subscription_id"]) == (
        "call-h",
        "corr-h",
        "sub-1",
    )
    assert call["ended_at"] is not None and call["sockets"] == 1
    assert {p["participant_raw_id"]: p["frames"] for p in call["participants"]} == {
        ALICE: 50,
        "8:acs:bob": 25,
    }
    assert call["counters"]["audio_frames"] == 75


def test_without_a_header_the_query_then_the_subscription_names_the_call(client):
    with client.websocket_connect("/ws/acs?call_id=call-q") as socket:
        send_all(client, socket, "call-q", [METADATA])
    with client.websocket_connect("/ws/acs") as socket:
        send_all(client, socket, "sub-9", [METADATA])
    assert call_state(client, "call-q")["status"] == "ENDED"
    assert call_state(client, "sub-9")["status"] == "ENDED"


BAD_OPENINGS = {
    "not JSON first": (["{oops"], 1007),
    "a binary frame first": ([b"\x00\x01"], 1007),
    "audio before metadata": ([audio()], 1008),
    "an unsupported sample rate": (
        [METADATA.replace("16000", "44100")],
        1008,
    ),
    "a changed format": ([METADATA, METADATA.replace("sub-9", "sub-10")], 1008),
    "too big a message": ([METADATA, audio(padding="x" * 20_000)], 1009),
    "fifty bad frames in a row": ([METADATA, *["{oops"] * 50], 1007),
}


@pytest.mark.parametrize("case", list(BAD_OPENINGS))
def test_bad_input_closes_with_the_documented_code(client, case):
    messages, code = BAD_OPENINGS[case]
    closed_code, reason = closed_with(client, messages, headers={"x-ms-call-connection-id": "b"})
    assert closed_code == code
    assert reason


def test_no_metadata_in_time_closes_1008(client):
    started = time.monotonic()
    code, reason = closed_with(
        client, [json.dumps({"kind": "DtmfData", "dtmfData": {"data": "1"}})]
    )
    assert code == 1008 and "no AudioMetadata within 1 s" in reason
    assert time.monotonic() - started < 5


def test_a_socket_that_stalls_after_its_metadata_is_closed_and_its_call_ends(client):
    started = time.monotonic()
    headers = {"x-ms-call-connection-id": "stalled"}
    code, reason = closed_with(
        client, [METADATA, *call_messages({ALICE: voice(0.5)})[1:]], headers=headers
    )
    assert code == 1008 and "no message for 1 s" in reason
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while client.get("/v1/calls/stalled").json()["status"] != "ENDED":
        assert time.monotonic() < deadline, "the stalled call never ended"
        time.sleep(0.05)


def test_bad_frames_are_dropped_and_counted_and_the_call_goes_on(client):
    bad = [
        "{oops",
        json.dumps({"no": "kind"}),
        audio(data="***"),
        audio(data=base64.b64encode(b"odd").decode()),
        audio(timestamp="yesterday"),
        audio(participantRawID=7),
        json.dumps({"kind": "DtmfData", "dtmfData": {"data": "5"}}),
        json.dumps({"kind": "TranscriptionData", "transcriptionData": {}}),
    ]
    good = call_messages({ALICE: voice(1.0)})
    with client.websocket_connect("/ws/acs", headers={"x-ms-call-connection-id": "c"}) as socket:
        send_all(client, socket, "c", [good[0], *bad, *good[1:], b"\x01\x02"])
    counters = call_state(client, "c")["counters"]
    assert counters["audio_frames"] == 50
    assert {name: counters[f"dropped_{name}"] for name in ("invalid_json", "invalid_message")} == {
        "invalid_json": 1,
        "invalid_message": 1,
    }
    assert counters["dropped_invalid_base64"] == 1 and counters["dropped_odd_length"] == 1
    assert counters["dropped_invalid_timestamp"] == 1
    assert counters["dropped_invalid_participant"] == 1
    assert counters["dropped_binary_frame"] == 1
    assert counters["dtmf_frames"] == 1 and counters["ignored_kinds"] == 1


def test_a_bad_socket_leaves_another_call_streaming(client):
    good = call_messages({ALICE: voice(2.0)})
    with client.websocket_connect("/ws/acs", headers={"x-ms-call-connection-id": "g"}) as socket:
        send_all(client, socket, "g", good[:51])
        code, _ = closed_with(
            client, [METADATA, "{oops"] + ["[]"] * 49, headers={"x-ms-call-connection-id": "g2"}
        )
        assert code == 1007
        assert client.get("/v1/calls/g").json()["status"] == "ONGOING"
        send_all(client, socket, "g", good[51:], sent=51)
    call = call_state(client, "g")
    assert call["participants"][0]["frames"] == 100
    assert call["counters"]["dropped"] == 0
