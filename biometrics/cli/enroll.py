"""``biometrics enroll PATH...``: recordings enrolled through a running service's REST API
(:mod:`biometrics.bulk_enrollment` does the work), with a progress bar on a terminal and a
summary table at the end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bar

from biometrics import bulk_enrollment
from biometrics.bulk_enrollment import Outcome
from biometrics.cli.exits import Exit
from biometrics.cli.options import Commands, add_command, open_client, service_options
from biometrics.cli.output import console, jsonable, print_json, print_table, table

DESCRIPTION = """\
Enroll recordings through a running biometrics service's REST API.

Each PATH is a folder with one subfolder per speaker (the subfolder's name is the
speaker_id; its .wav, .flac and .ogg files, in name order, are that speaker's recordings)
or a CSV manifest with the header speaker_id,path (a relative path is relative to the
manifest's folder). With --speaker, the PATHs are that one speaker's recordings: files, or
folders of them.

The run is resumable: a speaker the service already has ENROLLED is skipped (--overwrite
re-enrolls it), and so is one that OPTED_OUT. Every other speaker's voiceprint is rebuilt
from the PATHs alone: its first accepted upload replaces any earlier one, so a rerun after
an interrupted run never counts a recording twice. A rejected file (bad audio, too little
speech, too large) is reported and the speaker's other files are still sent.

Progress goes to stderr (a bar on a terminal, one line per speaker otherwise), the summary
table to stdout."""

EXAMPLES = """\
examples:
  # a folder per speaker:  recordings/alice/call-1.wav, recordings/bob/intro.ogg, ...
  biometrics enroll recordings/
  # a manifest of speaker_id,path lines
  biometrics enroll enroll.csv --overwrite
  # one speaker, from files and folders of files
  biometrics enroll --speaker cust-42 call1.wav call2.flac more-calls/

Exit status: 0 every speaker enrolled or skipped; 1 any speaker failed; 2 usage error (no
such path, bad manifest); 4 no usable API key; 5 the service did not answer."""


def register(commands: Commands) -> None:
    enroll = add_command(
        commands,
        "enroll",
        "enroll recordings through a running service",
        _enroll,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        parents=(service_options(),),
    )
    enroll.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        type=Path,
        help="a folder of speaker subfolders or a speaker_id,path CSV (with --speaker: "
        "recordings, or folders of them)",
    )
    enroll.add_argument(
        "--speaker",
        metavar="SPEAKER",
        help="the PATHs are this one speaker's recordings (default: each PATH names its speakers)",
    )
    enroll.add_argument(
        "--overwrite",
        action="store_true",
        help="re-enroll speakers that are already enrolled, replacing their voiceprint",
    )
    enroll.add_argument("--quiet", action="store_true", help="no progress on stderr")
    enroll.add_argument(
        "--json", action="store_true", help="print each speaker's outcome as JSON, not a table"
    )


def _enroll(args: argparse.Namespace) -> int:
    # A bad source fails here, before anything is sent.
    if args.speaker is not None:
        speakers = bulk_enrollment.load_speaker(args.speaker, args.paths)
    else:
        speakers = bulk_enrollment.load_sources(args.paths)
    with open_client(args) as api:
        files = sum(len(recordings) for recordings in speakers.values())
        with _progress(args.quiet, files) as progress:
            outcomes = bulk_enrollment.run(
                api, speakers, overwrite=args.overwrite, progress=progress
            )
    if args.json:
        print_json([{**jsonable(o), "result": o.result, "failed": o.failed} for o in outcomes])
    else:
        print_summary(outcomes)
    return Exit.FAILED if any(outcome.failed for outcome in outcomes) else Exit.OK


# --- Progress --------------------------------------------------------------------------------


def _progress(quiet: bool, files: int) -> ProgressBar | Lines | Silent:
    if quiet:
        return Silent()
    if sys.stderr.isatty():
        return ProgressBar(files, console(sys.stderr))
    return Lines()


class Silent(bulk_enrollment.Progress):
    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class Lines(Silent):
    """One line per speaker on stderr, for logs and pipes."""

    def finish(self, outcome: Outcome) -> None:
        print(
            f"{outcome.speaker_id}: {outcome.result} - {outcome.files_sent} file(s) sent, "
            f"{outcome.speech_seconds:.1f} s of speech enrolled",
            file=sys.stderr,
            flush=True,
        )


class ProgressBar(bulk_enrollment.Progress):
    """A bar of the files sent, with the speaker at work and the time left; each speaker's
    result is printed above it when the speaker is done."""

    def __init__(self, files: int, shown_on: Console) -> None:
        self._bar = Bar(
            TextColumn("[bold]{task.fields[speaker]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=shown_on,
            transient=True,
        )
        self._task: TaskID = self._bar.add_task("enroll", total=files, speaker="")
        self._before = 0  # files done before the current speaker's
        self._files = 0

    def __enter__(self) -> ProgressBar:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, speaker_id: str, files: int) -> None:
        self._before = int(self._bar.tasks[0].completed)
        self._files = files
        self._bar.update(self._task, speaker=speaker_id)

    def advance(self) -> None:
        self._bar.advance(self._task)

    def finish(self, outcome: Outcome) -> None:
        self._bar.update(self._task, completed=self._before + self._files)
        style = "red" if outcome.failed else ("dim" if outcome.skipped else "green")
        self._bar.console.print(f"{outcome.speaker_id}: {outcome.result}", style=style)


# --- The summary -----------------------------------------------------------------------------


def print_summary(outcomes: list[Outcome], stream: TextIO | None = None) -> None:
    """A table of the speakers, the files rejected and why, and the counts."""
    shown = table(
        "speaker_id",
        "files sent",
        "net speech (s)",
        "status",
        "result",
        right=("files sent", "net speech (s)"),
    )
    for o in outcomes:
        shown.add_row(
            o.speaker_id,
            str(o.files_sent),
            f"{o.speech_seconds:.1f}",
            o.status,
            o.result,
            style="red" if o.failed else None,
        )
    shown.add_section()
    total_sent = sum(o.files_sent for o in outcomes)
    total_speech = sum(o.speech_seconds for o in outcomes)
    shown.add_row("total", str(total_sent), f"{total_speech:.1f}", "", "")
    print_table(shown, stream)

    out = console(stream)
    rejected = [(o.speaker_id, r) for o in outcomes for r in o.rejected]
    if rejected:
        out.print("\nRejected files:")
        for speaker_id, rejection in rejected:
            out.print(f"  {speaker_id}: {rejection.label} - {rejection.reason}", markup=False)
    enrolled = sum(1 for o in outcomes if o.result == "enrolled")
    already = sum(1 for o in outcomes if o.skipped == "already enrolled")
    opted_out = sum(1 for o in outcomes if o.skipped == "opted out")
    failed = sum(1 for o in outcomes if o.failed)
    out.print(
        f"\n{len(outcomes)} speaker(s): {enrolled} enrolled, {already + opted_out} skipped "
        f"({already} already enrolled, {opted_out} opted out), {failed} failed; "
        f"{total_sent} file(s) sent, {len(rejected)} rejected",
        markup=False,
    )
