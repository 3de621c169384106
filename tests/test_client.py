"""biometrics.client: every endpoint against the real server (``live_server``), and the retry
policy and event-stream reconnects against a scripted transport that misbehaves on cue."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from biometrics.client import ApiError, Client, RetryPolicy, TransportError
from tests.api.helpers import speech_wav
from tests.streaming.helpers import call_messages, live_settings, voice
from tests.voices import wav_bytes

CALLER = "4:+14255550123"
AGENT = "8:acs:3d20e1de-1111_2222/agent"


@pytest.fixture
def settings(settings):
    return live_settings(settings)


@pytest.fixture
def service(live_server) -> Iterator[Client]:
    with Client(live_server.url, api_key=live_server.api_key, timeout=30) as client:
        yield client


def enrolled(service: Client, speaker_id: str, seed: int = 1) -> None:
    service.enroll(speaker_id, speech_wav(6.0, seed), replace=True)
    assert service.enroll(speaker_id, speech_wav(6.0, seed + 1)).status == "ENROLLED"


# --- Against the real service ---------------------------------------------------------------


def test_speakers_are_created_listed_read_opted_out_and_deleted(service: Client) -> None:
    created = service.create_speaker("ivr:+15551234567", display_name="Ada", aliases=("+1555",))
    assert (created.speaker_id, created.status, created.aliases) == (
        "ivr:+15551234567",
        "PENDING_ENROLLMENT",
        ("+1555",),
    )
    assert service.get_speaker("ivr:+15551234567") == created
    service.create_speaker("bob")
    first = service.list_speakers(limit=1)
    second = service.list_speakers(limit=1, cursor=first.next_cursor)
    assert [s.speaker_id for s in first.speakers + second.speakers] == ["bob", "ivr:+15551234567"]
    assert second.next_cursor is None

    opted = service.opt_out("bob")
    assert opted.status == "OPTED_OUT" and opted.enrolled_speech_seconds == 0.0
    service.delete_speaker("bob")
    with pytest.raises(ApiError) as missing:
        service.get_speaker("bob")
    assert (missing.value.status, missing.value.code) == (404, "speaker_not_found")
    assert "bob" in missing.value.detail and str(missing.value).startswith("HTTP 404")


def test_enroll_from_bytes_or_a_path_then_verify(service: Client, tmp_path: Path) -> None:
    first = service.enroll("alice", speech_wav(3.0, 1))  # under the 4 s of live_settings
    assert first.status == "PENDING_ENROLLMENT" and first.remaining_speech_seconds
    path = tmp_path / "second.flac"
    path.write_bytes(speech_wav(6.0, 2))  # a WAV named .flac: the service reads the bytes
    second = service.enroll("alice", path, content_type="audio/wav")
    assert second.status == "ENROLLED"
    assert second.enrolled_speech_seconds == pytest.approx(
        first.enrolled_speech_seconds + second.speech_seconds, abs=0.02
    )
    replaced = service.enroll("alice", speech_wav(3.0, 1), replace=True)
    assert replaced.enrolled_speech_seconds == first.enrolled_speech_seconds

    service.enroll("alice", speech_wav(6.0, 2))
    verdict = service.verify(speech_wav(4.0, 9), "alice", threshold=0)
    assert verdict.decision == "ACCEPT" and verdict.accepted and verdict.threshold == 0.0
    assert verdict.score is not None and 0 <= verdict.score <= 100
    assert verdict.model is not None and verdict.model.sha256
    assert verdict.quality is not None and verdict.quality.snr_db is not None
    strict = service.verify(speech_wav(4.0, 9), "alice", threshold=100)
    assert strict.decision == "REJECT"
    service.opt_out("carol")
    opted_out = service.verify(speech_wav(4.0, 9), "carol")  # a verdict, not an error
    assert opted_out.decision == "SPEAKER_OPTED_OUT" and opted_out.score is None


def test_error_answers_carry_the_services_code_and_detail(service: Client, live_server) -> None:
    with pytest.raises(ApiError) as undecodable:
        service.enroll("alice", b"RIFF\x00\x00not a wave file")
    assert (undecodable.value.status, undecodable.value.code) == (400, "invalid_audio")
    limit = live_server.settings.max_upload_bytes
    with pytest.raises(ApiError) as too_big:
        service.enroll("alice", wav_bytes(np.zeros(limit, dtype=np.float32)))
    assert (too_big.value.status, too_big.value.code) == (413, "payload_too_large")
    with pytest.raises(ApiError) as bad_threshold:
        service.verify(speech_wav(4.0), "alice", threshold=101)
    assert bad_threshold.value.code == "invalid_request" and "threshold" in str(bad_threshold.value)


def test_health_and_readiness(service: Client, live_server) -> None:
    assert service.health() == "ok"
    ready = service.ready()
    assert ready.ready and ready.database == "ok"
    assert ready.model is not None and ready.model.source == live_server.settings.model_source


def test_a_live_call_claimed_streamed_and_read_back(service: Client, live_server) -> None:
    """Raw ids with ``:``, ``+`` and ``/`` reach the service whole, URL-encoded."""
    enrolled(service, "alice")
    call_id = "client call:1"
    claimed = service.claim(call_id, CALLER, "alice", threshold=0)
    assert claimed.call_status == "PENDING" and claimed.participant_raw_id == CALLER
    assert claimed.claim is not None and claimed.claim.threshold == 0.0

    events = []
    follower = threading.Thread(target=lambda: events.extend(service.events(call_id)))
    follower.start()
    messages = call_messages({CALLER: voice(4.0, "a", seed=3), AGENT: voice(2.0, "b", seed=4)})
    url = live_server.url.replace("http://", "ws://") + "/ws/acs"
    asyncio.run(stream(url, call_id, messages, live_server.api_key))
    follower.join(30)
    assert not follower.is_alive()

    call = service.get_call(call_id)
    assert call.status == "ENDED" and {p.participant_raw_id for p in call.participants} == {
        CALLER,
        AGENT,
    }
    caller = service.get_participant(call_id, CALLER)
    assert (caller.call_id, caller.call_status) == (call_id, "ENDED")
    assert dataclasses.replace(caller, call_id=None, call_status=None) == call.participant(CALLER)
    history = service.verdicts(call_id, CALLER)
    assert history[-1].final and history[-1].decision == "ACCEPT"
    assert history[-1].call_id == call_id and history[-1].participant_raw_id == CALLER
    assert history[-1].first_audio_at is not None
    assert caller.latest_verdict == history[-1]

    assert [e.type for e in events][-1] == "call.ended"
    streamed = [e.verdict for e in events if e.type == "verdict.changed"]
    assert [v for v in streamed if v and v.participant_raw_id == CALLER] == history
    assert all(e.id for e in events)
    # Resuming after an event gives exactly the events after it.
    resumed = list(service.events(call_id, last_event_id=events[2].id))
    assert resumed == events[3:]


async def stream(url: str, call_id: str, messages: list[str], key: str) -> None:
    headers = {"x-ms-call-connection-id": call_id, "Authorization": f"Bearer {key}"}
    async with connect(url, additional_headers=headers) as socket:
        for message in messages:
            await socket.send(message)
            await asyncio.sleep(0)


def test_enrollment_from_a_call_and_unknown_calls(service: Client, live_server) -> None:
    with pytest.raises(ApiError) as unknown:
        service.get_call("no-such-call")
    assert (unknown.value.status, unknown.value.code) == (404, "call_not_found")
    with pytest.raises(ApiError):
        next(service.events("no-such-call"))

    messages = call_messages({CALLER: voice(6.0, "c", seed=8)})
    url = live_server.url.replace("http://", "ws://") + "/ws/acs"
    asyncio.run(stream(url, "enroll-call", messages, live_server.api_key))
    started = service.enroll_from_call("enroll-call", CALLER, "dana")
    assert started.enrollment is not None and started.enrollment.speaker_id == "dana"
    assert started.enrollment.call_speech_seconds > 1
    assert service.get_speaker("dana").enrolled_speech_seconds > 1


# --- The retry policy, against a scripted transport -------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*answers: httpx.Response | Exception) -> tuple[list[httpx.Request], Handler]:
    """Each request gets the next answer (an exception is raised instead); the last repeats."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, handle


def scripted_client(handler: Handler, **options: object) -> Client:
    return Client("http://service.test/prefix", transport=httpx.MockTransport(handler), **options)  # type: ignore[arg-type]


def error(status: int, code: str = "x", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "detail": "d"}, headers=headers)


SPEAKER = httpx.Response(200, json={"speaker_id": "a", "status": "ENROLLED", "extra": [1]})


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("biometrics.client.time.sleep", slept.append)
    return slept


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_overload_and_gateway_errors_are_retried_with_backoff(
    status: int, sleeps: list[float]
) -> None:
    seen, handler = scripted(error(status), error(status), SPEAKER)
    assert scripted_client(handler).get_speaker("a").status == "ENROLLED"
    assert len(seen) == 3 and sleeps == [0.5, 1.0]


@pytest.mark.parametrize("status", [400, 401, 404, 409, 413, 500])
def test_other_errors_are_not_retried(status: int, sleeps: list[float]) -> None:
    seen, handler = scripted(error(status, "nope"), SPEAKER)
    with pytest.raises(ApiError) as raised:
        scripted_client(handler).get_speaker("a")
    assert (raised.value.status, raised.value.code, raised.value.detail) == (status, "nope", "d")
    assert len(seen) == 1 and sleeps == []


def test_a_locked_out_speaker_is_not_retried_and_errors_name_their_request(
    sleeps: list[float],
) -> None:
    locked = error(429, "speaker_locked_out", **{"Retry-After": "840", "X-Request-ID": "r-7"})
    seen, handler = scripted(locked, SPEAKER)
    with pytest.raises(ApiError) as raised:
        scripted_client(handler).verify(b"RIFF", "a")
    assert (raised.value.code, raised.value.request_id) == ("speaker_locked_out", "r-7")
    assert len(seen) == 1 and sleeps == []
    assert len(seen[0].headers["X-Request-ID"]) == 32


def test_a_request_keeps_its_id_across_retries(sleeps: list[float]) -> None:
    seen, handler = scripted(error(503), SPEAKER)
    scripted_client(handler).get_speaker("a")
    first, second = (request.headers["X-Request-ID"] for request in seen)
    assert first == second


def test_retry_after_is_honoured_and_capped(sleeps: list[float]) -> None:
    _, handler = scripted(
        error(429, **{"Retry-After": "7"}),
        error(503, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),  # past: no extra wait
        error(503, **{"Retry-After": "3600"}),
        SPEAKER,
    )
    policy = RetryPolicy(retries=3, backoff_seconds=0.1, max_backoff_seconds=60)
    scripted_client(handler, retry=policy).get_speaker("a")
    assert sleeps == [7.0, 0.2, 60.0]


def test_after_the_last_retry_the_error_answer_is_raised(sleeps: list[float]) -> None:
    seen, handler = scripted(error(503, "unavailable"))
    with pytest.raises(ApiError) as raised:
        scripted_client(handler, retry=RetryPolicy(retries=2)).get_speaker("a")
    assert raised.value.code == "unavailable" and len(seen) == 3


def test_connection_errors_are_retried_then_raised(sleeps: list[float]) -> None:
    seen, handler = scripted(httpx.ConnectError("refused"))
    with pytest.raises(TransportError, match="refused"):
        scripted_client(handler, retry=RetryPolicy(retries=2)).enroll("a", b"x")
    assert len(seen) == 3 and sleeps == [0.5, 1.0]


def test_a_timeout_is_retried_unless_a_post_was_sent(sleeps: list[float]) -> None:
    seen, handler = scripted(httpx.ReadTimeout("slow"), SPEAKER)
    assert scripted_client(handler).get_speaker("a").speaker_id == "a"
    assert len(seen) == 2
    seen, handler = scripted(httpx.ReadTimeout("slow"), SPEAKER)
    with pytest.raises(TransportError, match="no answer within 60 s"):
        scripted_client(handler).enroll("a", b"x")  # it may have been enrolled: not twice
    assert len(seen) == 1


def test_requests_carry_the_api_key_and_encoded_path_parts() -> None:
    seen, handler = scripted(httpx.Response(200, json={"participant_raw_id": CALLER}))
    client = scripted_client(handler, api_key="k-123")
    client.claim("call/1", CALLER, "alice", threshold=50)
    (request,) = seen
    assert request.headers["authorization"] == "Bearer k-123"
    assert (
        request.url.raw_path == b"/prefix/v1/calls/call%2F1/participants/4%3A%2B14255550123/claim"
    )
    assert json.loads(request.content) == {"speaker_id": "alice", "threshold": 50}
    seen, handler = scripted(httpx.Response(200, json={}))
    scripted_client(handler).get_speaker("a")
    assert "authorization" not in seen[0].headers


def test_replies_are_read_leniently() -> None:
    seen, handler = scripted(httpx.Response(200, json={"decision": "ACCEPT", "new_key": 1}))
    verdict = scripted_client(handler).verify(b"x", "a")
    assert verdict.decision == "ACCEPT"
    assert verdict.score is None and verdict.quality is None and verdict.model is None
    assert seen[0].url.params["speaker_id"] == "a" and "threshold" not in seen[0].url.params


# --- Server-sent events --------------------------------------------------------------------------


def sse(*blocks: str) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content="".join(blocks).encode()
    )


def test_events_resume_after_the_last_id_when_the_stream_breaks(sleeps: list[float]) -> None:
    seen, handler = scripted(
        sse(
            "retry: 250\n\n", ": keep-alive\n\n", 'id: 1\nevent: participant.joined\ndata: {"a":\n'
        ),
        sse('id: 1\nevent: participant.joined\ndata: {"a": 1}\n\n'),  # the line came whole now
        sse('id: 2\nevent: verdict.changed\ndata: {"decision": "ACCEPT"}\n\n', "data: x\n\n"),
        sse("id: 3\nevent: call.ended\ndata: {}\n\n", "id: 4\nevent: never\ndata: {}\n\n"),
    )
    events = list(scripted_client(handler).events("c-1", last_event_id="0"))
    assert [(e.id, e.type) for e in events] == [
        ("1", "participant.joined"),
        ("2", "verdict.changed"),
        ("2", "message"),  # an event without id keeps the last one
        ("3", "call.ended"),
    ]
    assert events[0].data == {"a": 1} and events[2].data == "x"
    assert events[1].verdict is not None and events[1].verdict.decision == "ACCEPT"
    assert [r.headers.get("last-event-id") for r in seen] == ["0", "0", "1", "2"]
    assert all(r.headers["accept"] == "text/event-stream" for r in seen)
    assert sleeps == [0.25, 0.25, 0.25]  # retry: holds until the stream says otherwise


def test_an_event_stream_of_an_unknown_call_raises_at_once() -> None:
    seen, handler = scripted(error(404, "call_not_found"))
    with pytest.raises(ApiError) as raised:
        next(scripted_client(handler).events("gone"))
    assert raised.value.code == "call_not_found" and len(seen) == 1


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        Client("127.0.0.1:8000")
