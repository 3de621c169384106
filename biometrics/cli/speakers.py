"""``biometrics speakers list|show|delete|opt-out``: the service's speakers, through its
REST API."""

from __future__ import annotations

import argparse
import sys

from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text

from biometrics.cli.exits import CommandError, Exit
from biometrics.cli.options import (
    Commands,
    add_command,
    open_client,
    positive_int,
    service_options,
)
from biometrics.cli.output import (
    STATUS_STYLES,
    console,
    print_json,
    print_table,
    seconds,
    table,
    when,
)
from biometrics.client import ApiError, Client, Speaker

PAGE = 100  # speakers asked for per request

DESCRIPTION = """\
List, show, delete and opt out the speakers a running service knows. Deleting a speaker
deletes their voiceprint, enrollment records and every verdict on them; opting out deletes
the voiceprint and refuses any later enrollment (their audit rows stay, in either case).
Both ask first on a terminal; --yes is required anywhere else."""

EXAMPLES = """\
examples:
  biometrics speakers list
  biometrics speakers list --all --json | jq -r '.[] | select(.status == "ENROLLED") | .speaker_id'
  biometrics speakers show cust-42
  biometrics speakers opt-out cust-42
  biometrics speakers delete cust-42 cust-43 --yes

Exit status: 0 success; 1 not confirmed, nothing done; 2 usage error; 3 no such speaker;
4 no usable API key, or its role does not allow it; 5 the service did not answer."""


def register(commands: Commands) -> None:
    speakers = add_command(
        commands,
        "speakers",
        "list, show, delete or opt out speakers of a running service",
        description=DESCRIPTION,
        epilog=EXAMPLES,
    )
    actions = speakers.add_subparsers(
        title="actions", dest="action", required=True, metavar="ACTION"
    )
    service = service_options()

    listing = add_command(
        actions, "list", "a table of speakers, in speaker id order", _list, parents=(service,)
    )
    listing.add_argument(
        "--limit", type=positive_int, default=PAGE, metavar="N", help="show at most N speakers"
    )
    listing.add_argument("--all", action="store_true", help="show every speaker (no --limit)")
    _json_option(listing, "the speakers as a JSON array")

    show = add_command(
        actions, "show", "everything the service has on a speaker", _show, parents=(service,)
    )
    show.add_argument("speaker_id", metavar="SPEAKER", help="the speaker's id")
    _json_option(show, "the speaker as JSON")

    for name, summary, run in (
        ("delete", "delete speakers, their voiceprints and verdicts", _delete),
        ("opt-out", "delete speakers' voiceprints and refuse their enrollment", _opt_out),
    ):
        parser = add_command(actions, name, summary, run, parents=(service,))
        parser.add_argument("speaker_ids", nargs="+", metavar="SPEAKER", help="speaker ids")
        parser.add_argument("--yes", action="store_true", help="do it without asking")
        _json_option(parser, "the outcome as JSON")


def _json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what}, for scripts")


# --- list and show ---------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    limit = None if args.all else args.limit
    with open_client(args) as api:
        speakers, more = _read(api, limit)
    if args.json:
        print_json(speakers)
        return Exit.OK
    shown = table(
        "SPEAKER",
        "NAME",
        "STATUS",
        "SPEECH (S)",
        "NEEDS (S)",
        "LAST USED",
        right=("SPEECH (S)", "NEEDS (S)"),
    )
    for speaker in speakers:
        shown.add_row(
            speaker.speaker_id,
            speaker.display_name or "",
            _status(speaker.status),
            seconds(speaker.enrolled_speech_seconds),
            seconds(speaker.remaining_speech_seconds or None),
            when(speaker.last_accessed_at, "never"),
        )
    print_table(shown)
    err = console(sys.stderr)
    if more:
        err.print(f"the first {len(speakers)} speakers; --all lists every one", style="dim")
    elif not speakers:
        err.print("no speakers yet: enroll some with biometrics enroll", style="dim")
    return Exit.OK


def _read(api: Client, limit: int | None) -> tuple[list[Speaker], bool]:
    """Pages of speakers until ``limit`` of them (None: all); and whether more remain."""
    speakers: list[Speaker] = []
    cursor: str | None = None
    while True:
        wanted = PAGE if limit is None else min(PAGE, limit - len(speakers))
        page = api.list_speakers(limit=wanted, cursor=cursor)
        speakers.extend(page.speakers)
        cursor = page.next_cursor
        if cursor is None:
            return speakers, False
        if limit is not None and len(speakers) >= limit:
            return speakers, True


def _show(args: argparse.Namespace) -> int:
    with open_client(args) as api:
        speaker = api.get_speaker(args.speaker_id)
    if args.json:
        print_json(speaker)
        return Exit.OK
    model = speaker.model
    rows: list[tuple[str, str | Text]] = [
        ("speaker", speaker.speaker_id),
        ("name", speaker.display_name or "-"),
        ("aliases", ", ".join(speaker.aliases) or "-"),
        ("status", _status(speaker.status)),
        ("enrolled speech", f"{speaker.enrolled_speech_seconds:.1f} s"),
        ("still needed", _needed(speaker)),
        ("model", "-" if model is None else f"{model.name or model.source} ({model.sha256[:12]})"),
        ("created", when(speaker.created_at)),
        ("updated", when(speaker.updated_at)),
        ("last used", when(speaker.last_accessed_at, "never")),
        ("expires", when(speaker.expires_at, "not set")),
    ]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in rows:
        grid.add_row(name, value)
    print_table(grid)
    return Exit.OK


def _needed(speaker: Speaker) -> str:
    remaining = speaker.remaining_speech_seconds
    return "nothing" if not remaining else f"{remaining:.1f} s of speech"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


# --- delete and opt-out ----------------------------------------------------------------------


def _delete(args: argparse.Namespace) -> int:
    _confirm(args, "Delete", "with their voiceprints, enrollments and verdicts")
    outcomes: list[dict[str, object]] = []
    status = Exit.OK
    with open_client(args) as api:
        for speaker_id in args.speaker_ids:
            try:
                api.delete_speaker(speaker_id)
            except ApiError as error:
                if error.status != 404:
                    raise
                status = Exit.NOT_FOUND
                outcomes.append({"speaker_id": speaker_id, "deleted": False, "error": error.code})
                console(sys.stderr).print(f"{speaker_id}: no such speaker", style="red")
                continue
            outcomes.append({"speaker_id": speaker_id, "deleted": True})
            _say(args, f"deleted {speaker_id}")
    if args.json:
        print_json(outcomes)
    return status


def _opt_out(args: argparse.Namespace) -> int:
    _confirm(args, "Opt out", "deleting their voiceprints and refusing any later enrollment")
    opted: list[Speaker] = []
    with open_client(args) as api:
        for speaker_id in args.speaker_ids:
            opted.append(api.opt_out(speaker_id))
            _say(args, f"opted out {speaker_id}: voiceprint deleted, enrollment refused")
    if args.json:
        print_json(opted)
    return Exit.OK


def _confirm(args: argparse.Namespace, verb: str, consequence: str) -> None:
    """Ask on a terminal; elsewhere only --yes goes ahead (a script never hangs on a
    question, nor deletes by accident)."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(
            f"this cannot be undone: add --yes to {verb.lower()} {_named(args.speaker_ids)}",
            Exit.USAGE,
        )
    question = f"{verb} {_named(args.speaker_ids)}, {consequence}? This cannot be undone."
    if not Confirm.ask(question, default=False, console=console(sys.stderr)):
        raise CommandError("nothing was done", Exit.FAILED)


def _named(speaker_ids: list[str]) -> str:
    if len(speaker_ids) == 1:
        return speaker_ids[0]
    return f"{len(speaker_ids)} speakers ({', '.join(speaker_ids)})"


def _say(args: argparse.Namespace, line: str) -> None:
    """A line for a person; with --json only the JSON goes to stdout."""
    if not args.json:
        console().print(line, markup=False)
