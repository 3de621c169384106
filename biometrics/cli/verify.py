"""``biometrics verify SPEAKER PATH``: one recording judged against a speaker's voiceprint,
through the service's REST API; the exit status is the decision (0 only for ACCEPT)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.text import Text

from biometrics.cli.exits import CommandError, Exit
from biometrics.cli.options import Commands, add_command, open_client, score, service_options
from biometrics.cli.output import DECISION_STYLES, console, print_json

DESCRIPTION = """\
Verify a recording (WAV, FLAC or Ogg) against a speaker's voiceprint and print the
verdict: the decision, the 0-100 score against the threshold, the net speech judged, and
why when it was not scored (not enough speech, poor audio, not enrolled, ...)."""

EXAMPLES = """\
examples:
  biometrics verify cust-42 call.wav
  biometrics verify cust-42 call.flac --threshold 60
  biometrics verify cust-42 call.wav --json | jq .score

Exit status: 0 ACCEPT; 1 any other decision (REJECT, NOT_ENOUGH_SPEECH,
SPEAKER_NOT_ENROLLED, ...); 2 usage error; 4 no usable API key; 5 the service did not
answer; 6 the service refused the request (e.g. 429 speaker_locked_out)."""


def register(commands: Commands) -> None:
    verify = add_command(
        commands,
        "verify",
        "verify a recording against an enrolled speaker",
        _verify,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        parents=(service_options(),),
    )
    verify.add_argument("speaker_id", metavar="SPEAKER", help="the speaker the voice claims to be")
    verify.add_argument("audio", metavar="PATH", type=Path, help="the recording")
    verify.add_argument(
        "--threshold", type=score, help="decision threshold, 0 to 100 (default: the service's)"
    )
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")


def _verify(args: argparse.Namespace) -> int:
    if not args.audio.is_file():
        raise CommandError(f"{args.audio} is not a file", Exit.USAGE)
    with open_client(args) as api:
        verdict = api.verify(args.audio, args.speaker_id, threshold=args.threshold)
    if args.json:
        print_json(verdict)
    else:
        console().print(Text(verdict.describe(), style=DECISION_STYLES.get(verdict.decision, "")))
    return Exit.OK if verdict.accepted else Exit.FAILED
