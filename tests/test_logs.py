"""Logs a person can follow: every line of a call names the call and the participant, every
line of a request its request id (the one it sent in ``X-Request-ID``, also the one it gets
back), with nothing passed by hand; JSON lines in production, readable lines on a terminal.
End to end on a real server and a real socket, and the formatters on their own."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading

import httpx
import pytest
from websockets.asyncio.client import connect

from biometrics.logs import bind_log_context, configure_logging, log_context
from tests.streaming.helpers import call_messages, live_settings, voice
from tests.test_live_call_end_to_end import enroll, wait_for_call, ws_url

CALLER = "4:+14255550123"


@pytest.fixture
def settings(settings):
    return live_settings(settings)


def captured(monkeypatch: pytest.MonkeyPatch, log_format: str) -> io.StringIO:
    """The service's log, configured as ``biometrics serve`` does, into a buffer."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("INFO", log_format)
    return stream


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


async def stream_call(url: str, call_id: str, request_id: str, messages: list[str]) -> None:
    headers = {"x-ms-call-connection-id": call_id, "X-Request-ID": request_id}
    async with connect(url, additional_headers=headers) as socket:
        for message in messages:
            await socket.send(message)
            await asyncio.sleep(0)


def test_every_line_of_a_call_names_its_call_participant_and_request(live_server, monkeypatch):
    log = captured(monkeypatch, "json")
    call_id = "logged-call"
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        # The caller's number is alice's alias: the participant claims itself when it joins,
        # and its verdicts follow, all in tasks of the call, none told who they are for.
        enroll(http, "alice", "a", seed=1, aliases=["+14255550123"])
        messages = call_messages({CALLER: voice(4.0, "a", seed=7)})
        asyncio.run(stream_call(ws_url(live_server), call_id, "socket-req-1", messages))
        call = wait_for_call(http, call_id, lambda body: body["status"] == "ENDED")
        assert call["participants"][0]["latest_verdict"]["decision"] in ("ACCEPT", "REJECT")

        missing = http.get("/v1/speakers/nobody", headers={"X-Request-ID": "rest-req-1"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "rest-req-1"

    lines = json_lines(log)
    socket = [line for line in lines if line.get("request_id") == "socket-req-1"]
    messages_seen = {line["message"] for line in socket}
    assert {"call socket open", "participant claimed by alias", "verdict"} <= messages_seen
    assert "call socket closed" in messages_seen
    for line in socket:
        if line["logger"].startswith("biometrics"):
            assert line.get("call_id") == call_id, line
    # The server's own line of the socket names it, but not the key in its query string.
    (accepted,) = [line for line in socket if "[accepted]" in line["message"]]
    secret = live_server.api_key.split("_", 2)[2]
    assert "/ws/acs?token=***" in accepted["message"] and secret not in log.getvalue()
    by_participant = [
        line for line in socket if line["message"] in ("participant claimed by alias", "verdict")
    ]
    assert by_participant and all(line["participant"] == CALLER for line in by_participant)
    assert [line["speaker_id"] for line in by_participant if line["message"] == "verdict"]

    # A request's lines, its access line too, carry its id, and no call's.
    rest = [line for line in lines if line.get("request_id") == "rest-req-1"]
    assert {line["logger"] for line in rest} == {"biometrics.api.errors", "uvicorn.access"}
    (refused,) = [line for line in rest if line["message"] == "request refused"]
    assert refused["error"] == "speaker_not_found"
    assert all("call_id" not in line and "participant" not in line for line in rest)


def test_a_request_without_a_sane_id_gets_one_and_its_lines_carry_it(live_server, monkeypatch):
    log = captured(monkeypatch, "json")
    response = httpx.get(
        f"{live_server.url}/v1/speakers/nobody",
        headers={**live_server.headers, "X-Request-ID": "has spaces"},
    )
    given = response.headers["X-Request-ID"]
    assert given != "has spaces" and len(given) == 32
    (line,) = [line for line in json_lines(log) if line["message"] == "request refused"]
    assert line["request_id"] == given


def test_the_context_reaches_tasks_and_threads_and_is_restored(monkeypatch):
    log = captured(monkeypatch, "json")
    logger = logging.getLogger("biometrics.test")

    async def call() -> None:
        bind_log_context(call_id="c1")  # for the rest of this task only
        logger.info("in the task")
        with log_context(participant="p1"):
            await asyncio.to_thread(logger.info, "in a worker thread")
            await asyncio.get_running_loop().create_task(_log(logger, "in a task it started"))
            logger.info("explicit wins", extra={"participant": "other"})
        logger.info("after the participant")

    with log_context(request_id="r1"):
        asyncio.run(call())
        threading.Thread(target=logger.info, args=("a bare thread",)).start()
    logger.info("outside")

    fields = {
        line["message"]: {k: line.get(k) for k in ("request_id", "call_id", "participant")}
        for line in json_lines(log)
    }
    assert fields["in the task"] == {"request_id": "r1", "call_id": "c1", "participant": None}
    for message in ("in a worker thread", "in a task it started"):
        assert fields[message] == {"request_id": "r1", "call_id": "c1", "participant": "p1"}
    assert fields["explicit wins"]["participant"] == "other"
    assert fields["after the participant"]["participant"] is None
    # A thread started by hand has a context of its own, and outside nothing is left over.
    assert fields["a bare thread"] == {"request_id": None, "call_id": None, "participant": None}
    assert fields["outside"] == {"request_id": None, "call_id": None, "participant": None}


async def _log(logger: logging.Logger, message: str) -> None:
    logger.info(message)


def test_a_terminal_line_reads_as_a_sentence_with_the_context_first(monkeypatch):
    log = captured(monkeypatch, "console")
    with log_context(call_id="c1", participant="4:+14255550123"):
        logging.getLogger("biometrics.streaming.endpoint").warning(
            "closing call socket",
            extra={"close_code": 1008, "reason": "no message for 5 s", "correlation_id": None},
        )
    (line,) = log.getvalue().splitlines()
    time, level, rest = line.split(maxsplit=2)
    assert len(time) == 8 and time.count(":") == 2 and level == "WARNING"
    assert rest == (
        "streaming.endpoint: closing call socket  call_id=c1 participant=4:+14255550123 "
        'close_code=1008 reason="no message for 5 s"'
    )
    assert not line.startswith("{")


def test_production_lines_are_one_json_object_each(monkeypatch):
    log = captured(monkeypatch, "json")
    with log_context(request_id="r9"):
        try:
            raise ValueError("broken")
        except ValueError:
            logging.getLogger("biometrics.api").exception("failed", extra={"path": "/v1/x"})
    (line,) = log.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "failed" and entry["level"] == "error"
    assert entry["logger"] == "biometrics.api" and entry["time"].endswith("Z")
    assert (entry["request_id"], entry["path"]) == ("r9", "/v1/x")
    assert "ValueError: broken" in entry["exception"]
