"""``biometrics simulate-call``: audio files played into ``/ws/acs`` as an ACS call would
(thin over :mod:`biometrics.simulator`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from biometrics import simulator
from biometrics.cli.exits import Exit
from biometrics.cli.options import Commands, add_command, header, non_negative_float, pair
from biometrics.config import ClientSettings

DESCRIPTION = """\
Stream audio files to the service as an Azure Communication Services call would: one
AudioMetadata message, then 20 ms AudioData frames per participant, on one WebSocket.
Claims go to PUT /v1/calls/{call_id}/participants/{raw_id}/claim once the metadata is
sent, before any audio."""

EXAMPLES = """\
examples:
  # unmixed: one participant per file, their frames interleaved on one socket
  biometrics simulate-call --participant 8:acs:caller=caller.wav \\
      --participant 8:acs:agent=agent.flac

  # mixed: the files summed into one stream, at 24 kHz, paced like a real call
  biometrics simulate-call --mixed call.wav --sample-rate 24000 --realtime

  # claim who the caller says they are, and print the service's events as they come
  biometrics simulate-call --call-id demo-1 --events \\
      --participant 4:+15551234567=caller.wav --claim 4:+15551234567=alice

Exit status: 0 when every frame was sent and the socket closed normally; 1 when the
connection failed or the server closed it (its code and reason are printed); 2 for usage
errors (bad arguments, unreadable audio)."""


def register(commands: Commands) -> None:
    parser = add_command(
        commands,
        "simulate-call",
        "stream audio files to the service as an ACS call",
        _simulate_call,
        description=DESCRIPTION,
        epilog=EXAMPLES,
    )
    parser.add_argument("--url", default=simulator.DEFAULT_URL, help="the service's WebSocket")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--participant",
        action="append",
        default=[],
        type=pair("RAW_ID=PATH"),
        metavar="RAW_ID=PATH",
        help="unmixed: one participant's audio file (repeatable; default: none)",
    )
    source.add_argument(
        "--mixed",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="mixed: files summed into one stream naming no participant (repeatable; "
        "default: none)",
    )
    parser.add_argument(
        "--call-id", help="sent as x-ms-call-connection-id (default: a random UUID)"
    )
    parser.add_argument(
        "--call-id-in-query", action="store_true", help="also send the call id as ?call_id="
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=header,
        metavar="NAME:VALUE",
        help="an extra header on the WebSocket request, e.g. Authorization (repeatable; "
        "default: none)",
    )
    parser.add_argument(
        "--sample-rate", type=int, choices=simulator.SAMPLE_RATES, default=16_000, help="call rate"
    )
    parser.add_argument("--realtime", action="store_true", help="pace frames at 20 ms")
    parser.add_argument(
        "--claim",
        action="append",
        default=[],
        type=pair("RAW_ID=SPEAKER_ID"),
        metavar="RAW_ID=SPEAKER_ID",
        help="claim a participant's identity before the audio (repeatable; default: none)",
    )
    parser.add_argument(
        "--events", action="store_true", help="print the call's events until it ends"
    )
    parser.add_argument(
        "--api-url",
        metavar="URL",
        help="the REST API for claims and events (default: the WebSocket's host over http)",
    )
    parser.add_argument(
        "--api-key",
        help="API key for claims and events (default: $BIOMETRICS_API_KEY, if set)",
    )
    parser.add_argument(
        "--linger",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="keep the socket open this long after the last frame",
    )


def _simulate_call(args: argparse.Namespace) -> int:
    api_key = args.api_key or ClientSettings.from_env().api_key
    options = simulator.Options(
        url=args.url,
        participants=[(raw_id, Path(path)) for raw_id, path in args.participant],
        mixed=args.mixed,
        call_id=args.call_id,
        call_id_in_query=args.call_id_in_query,
        headers=dict(args.header),
        sample_rate=args.sample_rate,
        realtime=args.realtime,
        claims=args.claim,
        events=args.events,
        api_url=args.api_url,
        api_key=api_key,
        linger=args.linger,
    )
    try:
        simulator.simulate(options, sys.stdout)
    except simulator.CallFailed as error:
        print(f"biometrics simulate-call: {error}", file=sys.stderr, flush=True)
        return Exit.FAILED
    return Exit.OK
