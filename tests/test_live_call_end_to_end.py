"""End to end, live calls: a real uvicorn server on loopback, real WebSockets from the call
simulator's own code, claims and reads over HTTP, server-sent events followed as they
happen, and webhooks delivered to a receiver on loopback.

With the suite's tiny random-weight model every voice sounds alike, so these tests assert
the schedule, the shapes and the thresholds (0 accepts, 100 rejects), not who is who; the
genuine-versus-impostor check on real speech comes with the trained model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.parse

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from biometrics import cli, simulator
from biometrics.events.webhooks import SIGNATURE_HEADER, sign
from biometrics.streaming import AudioFormat, DtmfFrame, encode_dtmf, encode_metadata
from tests.events.receiver import WebhookReceiver
from tests.streaming.helpers import (
    START,
    assert_follows_schedule,
    call_messages,
    live_settings,
    voice,
)
from tests.voices import wav_bytes

SECRET = "end-to-end-secret"
ALICE, BOB, AGENT, PHONE = "8:acs:alice", "8:acs:bob", "8:acs:agent", "4:+14255550199"


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET).running() as running:
        yield running


@pytest.fixture
def settings(settings, receiver):
    return live_settings(
        settings,
        webhook_urls=receiver.url,
        webhook_secret=SECRET,
        webhook_backoff_seconds=0.05,
    )


def ws_url(live_server, query: str = "") -> str:
    """The socket's URL with a key in ``?token=``, as ACS's transportUrl may carry it."""
    token = ("&" if query else "?") + f"token={live_server.api_key}"
    return live_server.url.replace("http://", "ws://") + "/ws/acs" + query + token


def participant_path(call_id: str, raw_id: str, *rest: str) -> str:
    return "/".join(
        [f"/v1/calls/{call_id}/participants", urllib.parse.quote(raw_id, safe=""), *rest]
    )


def enroll(http: httpx.Client, speaker_id: str, name: str, seed: int, aliases=()) -> None:
    http.post("/v1/speakers", json={"speaker_id": speaker_id, "aliases": list(aliases)})
    upload = {"audio": ("voice.wav", wav_bytes(voice(6.0, name, seed=seed)), "audio/wav")}
    response = http.post(f"/v1/speakers/{speaker_id}/enrollments", files=upload)
    assert response.json()["status"] == "ENROLLED", response.text


def wait_for_call(http: httpx.Client, call_id: str, done, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(f"/v1/calls/{call_id}")
        if response.status_code == 200 and done(response.json()):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"call {call_id}: {response.text}")
        time.sleep(0.05)


async def follow_events(live_server, call_id: str) -> list[tuple[str, str, dict]]:
    """Server-sent events of the call as they happen, until call.ended."""
    events: list[tuple[str, str, dict]] = []
    async with (
        httpx.AsyncClient(
            base_url=live_server.url, headers=live_server.headers, timeout=30
        ) as http,
        http.stream("GET", f"/v1/calls/{call_id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    events.append((fields["id"], fields["event"], json.loads(fields["data"])))
                    if fields["event"] == "call.ended":
                        return events
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return events


async def send_call(url: str, call_id: str, messages: list[str]) -> None:
    async with connect(url, additional_headers={"x-ms-call-connection-id": call_id}) as socket:
        for message in messages:
            await socket.send(message)
            await asyncio.sleep(0)


def test_end_to_end_four_participant_call_with_claims_events_and_webhooks(live_server, receiver):
    receiver.statuses = [500]  # the first delivery fails and is retried
    call_id = "e2e-four"
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        enroll(http, "alice", "a", seed=1)
        enroll(http, "bob", "b", seed=2)
        enroll(http, "carol", "c", seed=3, aliases=["+14255550199"])
        for raw_id, speaker_id, threshold in ((ALICE, "alice", 0), (BOB, "bob", 100)):
            claimed = http.put(
                participant_path(call_id, raw_id, "claim"),
                json={"speaker_id": speaker_id, "threshold": threshold},
            )
            assert claimed.json()["call_status"] == "PENDING"

        streams = [
            simulator.Stream(raw_id, simulator.to_pcm(voice(4.5, name, seed=10 + i)))
            for i, (raw_id, name) in enumerate(
                ((ALICE, "a"), (BOB, "b"), (AGENT, "d"), (PHONE, "c"))
            )
        ]

        async def call() -> list[tuple[str, str, dict]]:
            events = asyncio.create_task(follow_events(live_server, call_id))
            await simulator.stream_call(
                ws_url(live_server),
                {"x-ms-call-connection-id": call_id, "x-ms-call-correlation-id": "corr-four"},
                simulator.call_format(16_000, "sub-four"),
                simulator.frames_for(streams, 16_000, START),
            )
            return await asyncio.wait_for(events, 30)

        events = asyncio.run(call())
        summary = http.get(f"/v1/calls/{call_id}").json()
        histories = {
            raw_id: http.get(participant_path(call_id, raw_id, "verdicts")).json()["verdicts"]
            for raw_id in (ALICE, BOB, AGENT, PHONE)
        }

    # The call and its participants over REST.
    assert (summary["status"], summary["correlation_id"], summary["sockets"]) == (
        "ENDED",
        "corr-four",
        1,
    )
    participants = {p["participant_raw_id"]: p for p in summary["participants"]}
    assert set(participants) == {ALICE, BOB, AGENT, PHONE}
    assert all(p["frames"] == 225 and p["net_speech_seconds"] > 3 for p in participants.values())
    assert participants[PHONE]["claim"] == {
        "speaker_id": "carol",
        "threshold": None,
        "source": "alias",
    }
    assert participants[AGENT]["claim"] is None
    assert participants[AGENT]["latest_verdict"]["decision"] == "SPEAKER_ID_NOT_PROVIDED"
    for raw_id, decision in ((ALICE, "ACCEPT"), (BOB, "REJECT")):
        history = histories[raw_id]
        assert history[0]["decision"] == "NOT_ENOUGH_SPEECH"
        assert {v["decision"] for v in history[1:]} == {decision}
        assert_follows_schedule(history)
        assert participants[raw_id]["latest_verdict"] == history[-1]
        final = history[-1]
        assert final["threshold"] in (0.0, 100.0) and 0 <= final["score"] <= 100
        assert final["model"]["sha256"] and final["calibrated"] is False
        assert final["first_audio_at"] >= "2024-11-15T19:16:12.925Z"
        assert final["last_audio_at"] > final["first_audio_at"]
    assert_follows_schedule(histories[PHONE])

    # The same verdicts as they happened, over server-sent events.
    kinds = [kind for _, kind, _ in events]
    assert kinds.count("participant.joined") == 4 and kinds[-1] == "call.ended"
    streamed = [data for _, kind, data in events if kind == "verdict.changed"]
    for raw_id in (ALICE, BOB, AGENT, PHONE):
        mine = [v for v in streamed if v["participant_raw_id"] == raw_id]
        assert mine == histories[raw_id]

    # And as signed CloudEvents, to the webhook, the refused first one retried (the others
    # do not wait for it: the retry may come after newer events).
    delivered = receiver.wait_for(
        lambda got: (
            any(e["type"] == "biometrics.call.ended" for e in got)
            and len(got) == len({e["id"] for e in got}) + 1
        )
    )
    assert all(
        headers[SIGNATURE_HEADER.lower()] == sign(SECRET, body) for headers, body in receiver.posts
    )
    ids = [e["id"] for e in delivered]
    assert ids.count(ids[0]) == 2  # 500, then the same event again
    assert set(ids) == {event_id for event_id, _, _ in events}
    cloud = next(e for e in delivered if e["type"] == "biometrics.verdict.changed")
    assert {key: cloud[key] for key in ("specversion", "source", "datacontenttype")} == {
        "specversion": "1.0",
        "source": f"/v1/calls/{call_id}",
        "datacontenttype": "application/json",
    }
    assert cloud["subject"] == cloud["data"]["participant_raw_id"] and cloud["time"]


def test_end_to_end_mixed_call_at_24_khz_named_in_the_query(live_server):
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        enroll(http, "alice", "a", seed=1)
        http.put(participant_path("e2e-mixed", "mixed", "claim"), json={"speaker_id": "alice"})
        messages = call_messages({None: voice(4.5, "a", seed=5, rate=24_000)}, rate=24_000)
        asyncio.run(send_call(ws_url(live_server, "?call_id=e2e-mixed"), "", messages))
        call = wait_for_call(http, "e2e-mixed", lambda c: c["status"] == "ENDED")
        history = http.get(participant_path("e2e-mixed", "mixed", "verdicts")).json()["verdicts"]
    (mixed,) = call["participants"]
    assert call["audio_format"] == {
        "encoding": "PCM",
        "sample_rate": 24_000,
        "channels": 1,
        "frame_bytes": 960,
        "mixed": True,
    }
    assert mixed["participant_raw_id"] == "mixed" and mixed["mixed"] is True
    assert mixed["frames"] == 225 and mixed["net_speech_seconds"] > 3
    assert_follows_schedule(history)


def test_end_to_end_a_reconnect_continues_the_same_call(live_server):
    call_id = "e2e-reconnect"
    messages = call_messages({ALICE: voice(4.5, "a", seed=6)})
    first, second = messages[:101], [messages[0], *messages[101:]]  # each socket: metadata first
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        enroll(http, "alice", "a", seed=1)
        http.put(participant_path(call_id, ALICE, "claim"), json={"speaker_id": "alice"})
        asyncio.run(send_call(ws_url(live_server), call_id, first))
        ended = wait_for_call(http, call_id, lambda c: c["status"] == "ENDED")
        asyncio.run(send_call(ws_url(live_server), call_id, second))
        call = wait_for_call(http, call_id, lambda c: c["status"] == "ENDED" and c["sockets"] == 2)
        history = http.get(participant_path(call_id, ALICE, "verdicts")).json()["verdicts"]
    before = ended["participants"][0]
    assert before["frames"] == 100
    # The first socket's end judged all the speech heard so far ...
    assert before["latest_verdict"]["speech_seconds"] == before["net_speech_seconds"]
    (alice,) = call["participants"]
    assert alice["frames"] == 225 and alice["claim"]["speaker_id"] == "alice"
    assert call["counters"]["metadata_frames"] == 2 and call["counters"]["audio_frames"] == 225
    # ... and the second went on from there, to one final verdict.
    seconds = [v["speech_seconds"] for v in history if v["decision"] == "ACCEPT"]
    assert seconds == sorted(set(seconds)) and seconds[0] >= 1.0 and seconds[-1] == 3.0
    assert [v["final"] for v in history].count(True) == 1 and history[-1]["final"]


def metadata(rate: int = 16_000, encoding: str = "PCM") -> str:
    return encode_metadata(AudioFormat("sub-bad", rate, 1, rate // 25), encoding=encoding)


# Each closes with its code (README, "Bad input"); the drops are checked beside them.
BAD_INPUTS = {
    "not JSON before the metadata": (lambda: ["{oops"], 1007),
    "a binary frame before the metadata": (lambda: [b"\x00"], 1007),
    "audio before the metadata": (lambda: call_messages({ALICE: voice(0.1)})[1:2], 1008),
    "an unsupported encoding": (lambda: [metadata(encoding="OPUS")], 1008),
    "a changed format": (lambda: [metadata(), metadata(24_000)], 1008),
    "too big a message": (lambda: [metadata(), "x" * 20_000], 1009),
    "fifty bad frames in a row": (lambda: [metadata(), *["{oops"] * 50], 1007),
    "no metadata in time": (lambda: [], 1008),
}


async def closed_by_server(url: str, call_id: str, messages: list[str | bytes]) -> tuple[int, str]:
    async with connect(url, additional_headers={"x-ms-call-connection-id": call_id}) as socket:
        with contextlib.suppress(ConnectionClosed):
            for message in messages:
                await socket.send(message)
            await asyncio.wait_for(socket.recv(), 10)
    assert socket.close_code is not None
    return socket.close_code, socket.close_reason or ""


def test_end_to_end_bad_input_closes_or_drops_while_another_call_streams(live_server):
    """The slowest here (about 3 s): the good call is paced in real time throughout."""
    good_id = "e2e-good"
    good = call_messages({ALICE: voice(3.0, "a", seed=7)})
    dropped = [
        good[0],
        "{oops",
        json.dumps({"kind": "AudioData", "audioData": {"timestamp": "x", "data": "AAA="}}),
        encode_dtmf(DtmfFrame("9", None, None)),
        *good[1:],
    ]

    async def scenario():
        async def good_call():
            # Paced like a real call, so that it is live while the bad sockets come and go.
            streams = [simulator.Stream(ALICE, simulator.to_pcm(voice(3.0, "a", seed=7)))]
            return await simulator.stream_call(
                ws_url(live_server),
                {"x-ms-call-connection-id": good_id},
                simulator.call_format(16_000, "sub-good"),
                simulator.frames_for(streams, 16_000, START),
                realtime=True,
            )

        streaming = asyncio.create_task(good_call())
        closes = {}
        for number, (case, (messages, _)) in enumerate(BAD_INPUTS.items()):
            url = ws_url(live_server)
            closes[case] = await closed_by_server(url, f"bad-{number}", messages())
        await send_call(ws_url(live_server), "e2e-drops", dropped)
        report = await streaming
        return closes, report

    closes, report = asyncio.run(scenario())
    for case, (_, code) in BAD_INPUTS.items():
        assert closes[case][0] == code, (case, closes[case])
        assert closes[case][1], case  # a reason for the operator
    assert report.frames == {ALICE: 150}
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=30) as http:
        good_call = wait_for_call(http, good_id, lambda c: c["status"] == "ENDED")
        drops = wait_for_call(http, "e2e-drops", lambda c: c["status"] == "ENDED")
    assert good_call["participants"][0]["frames"] == 150
    assert good_call["counters"]["dropped"] == 0
    assert good_call["participants"][0]["latest_verdict"]["decision"] == "SPEAKER_ID_NOT_PROVIDED"
    counters = drops["counters"]
    assert counters["audio_frames"] == 150 and counters["dtmf_frames"] == 1
    assert counters["dropped_invalid_json"] == 1 and counters["dropped_invalid_timestamp"] == 1


def test_end_to_end_enrollment_from_a_live_call_reaches_enrolled(live_server):
    call_id = "e2e-enroll"
    messages = call_messages({PHONE: voice(7.0, "c", seed=8)})

    async def scenario():
        url = ws_url(live_server)
        async with (
            connect(url, additional_headers={"x-ms-call-connection-id": call_id}) as socket,
            httpx.AsyncClient(
                base_url=live_server.url, headers=live_server.headers, timeout=60
            ) as http,
        ):
            for message in messages[:101]:
                await socket.send(message)
            deadline = time.monotonic() + 10
            while (await http.get(f"/v1/calls/{call_id}")).json().get("counters", {}).get(
                "audio_frames"
            ) != 100:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            started = await http.post(
                participant_path(call_id, PHONE, "enroll"), json={"speaker_id": "dana"}
            )
            for message in messages[101:]:
                await socket.send(message)
                await asyncio.sleep(0)
        return started

    started = asyncio.run(scenario())
    assert started.status_code == 200, started.text
    assert started.json()["enrollment"]["call_speech_seconds"] > 1
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=30) as http:
        call = wait_for_call(
            http, call_id, lambda c: c["participants"][0]["enrollment"]["status"] == "ENROLLED"
        )
        speaker = http.get("/v1/speakers/dana").json()
    assert call["participants"][0]["enrollment"]["active"] is False
    assert speaker["status"] == "ENROLLED" and speaker["enrolled_speech_seconds"] >= 4.0


def test_end_to_end_the_call_simulator_claims_streams_and_prints_the_events(
    live_server, tmp_path, capsys
):
    caller = tmp_path / "caller.wav"
    caller.write_bytes(wav_bytes(voice(4.0, "a", seed=9)))
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        enroll(http, "alice", "a", seed=1)
    status = cli.main(
        [
            "simulate-call",
            "--url",
            ws_url(live_server),
            "--call-id",
            "e2e-simulated",
            "--events",
            "--participant",
            f"{PHONE}={caller}",
            "--claim",
            f"{PHONE}=alice",
            "--linger",
            "0.5",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    # The claim goes once the metadata is sent; the service may not have read it yet.
    assert re.search(
        rf"claim {re.escape(PHONE)} as alice: claimed \(call (PENDING|ONGOING)\)", printed
    )
    # The events were followed once the call was known: no error (a 404) printed about them.
    assert not [line for line in printed.splitlines() if line.startswith("events:")]
    assert "event participant.joined:" in printed
    verdicts = [line for line in printed.splitlines() if line.startswith("event verdict.changed:")]
    assert '"decision":"NOT_ENOUGH_SPEECH"' in verdicts[0]  # the claim's, before the audio
    assert '"final":true' in verdicts[-1]  # fast frames: the model may skip steps, not this
    assert printed.splitlines()[-3].startswith("event call.ended:")  # followed to the end
