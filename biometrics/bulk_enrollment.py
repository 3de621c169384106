"""Bulk enrollment: many speakers' recordings sent through a running service's REST API.

The source is a folder with one subfolder of recordings per speaker, or a CSV manifest
``speaker_id,path`` (``load_source``). ``run`` enrolls it over ``biometrics.client.Client``,
one speaker at a time, and prints the summary table. The run is resumable: a speaker the
service has ENROLLED is skipped unless ``overwrite``, one that OPTED_OUT always is, and every
other speaker's voiceprint is rebuilt from the source alone (its first accepted upload
replaces any earlier one), so a rerun never counts a recording twice. A rejected file is
reported and the speaker's other files are still sent; if the service stops answering, the
speakers left are not tried.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from biometrics.client import CONTENT_TYPES, ApiError, Client, TransportError
from biometrics.statuses import SpeakerStatus

MANIFEST_HEADER = ["speaker_id", "path"]
BAR_WIDTH = 30


class UsageError(Exception):
    """A source that cannot be read, or a service that cannot be used: nothing was sent."""


def run(
    api: Client,
    speakers: dict[str, list[Recording]],
    *,
    overwrite: bool = False,
    progress: TextIO,
    quiet: bool = False,
    out: TextIO,
) -> list[Outcome]:
    """Enroll every speaker, showing progress on ``progress`` unless ``quiet``, and print the
    summary table to ``out``; raise UsageError if the service does not answer first."""
    _check_service(api)
    total_files = sum(len(recordings) for recordings in speakers.values())
    shown = Progress(total_files, progress, quiet=quiet)
    try:
        outcomes = _enroll_all(api, speakers, overwrite=overwrite, progress=shown)
    finally:
        shown.close()
    _print_summary(outcomes, out)
    return outcomes


def _check_service(api: Client) -> None:
    try:
        api.health()
    except TransportError as error:
        raise UsageError(f"cannot reach the service at {api.base_url}: {error}") from None
    except ApiError as error:
        raise UsageError(
            f"{api.base_url} does not look like the biometrics service: "
            f"GET /healthz answered {error}"
        ) from None


# --- Reading the source ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recording:
    path: Path
    label: str  # how the summary names the file


def load_source(source: Path) -> dict[str, list[Recording]]:
    """Each speaker_id with its recordings, in enrollment order."""
    if source.is_dir():
        return _load_folder(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _load_manifest(source)
    if source.exists():
        raise UsageError(f"{source} is neither a folder nor a .csv manifest")
    raise UsageError(f"{source} does not exist")


def _load_folder(root: Path) -> dict[str, list[Recording]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UsageError(f"{root} has no speaker subfolders (one per speaker_id)")
    return {
        folder.name: [
            Recording(path, path.name)
            for path in sorted(folder.iterdir())
            if path.is_file() and path.suffix.lower() in CONTENT_TYPES
        ]
        for folder in folders
    }


def _load_manifest(manifest: Path) -> dict[str, list[Recording]]:
    with manifest.open(newline="", encoding="utf-8-sig") as file:
        rows = list(csv.reader(file))
    if not rows or [cell.strip() for cell in rows[0]] != MANIFEST_HEADER:
        raise UsageError(f"{manifest} must start with the header line: {','.join(MANIFEST_HEADER)}")
    speakers: dict[str, list[Recording]] = {}
    problems = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            problems.append(f"line {line}: expected speaker_id,path")
            continue
        speaker_id, name = row[0].strip(), row[1].strip()
        path = manifest.parent / name  # an absolute name replaces the folder
        if path.suffix.lower() not in CONTENT_TYPES:
            problems.append(f"line {line}: {name} is not a .wav, .flac or .ogg file")
        elif not path.is_file():
            problems.append(f"line {line}: {name} does not exist")
        else:
            recordings = speakers.setdefault(speaker_id, [])
            if all(recording.path != path for recording in recordings):
                recordings.append(Recording(path, name))
    if problems:
        raise UsageError(f"{manifest} has problems:\n  " + "\n  ".join(problems))
    if not speakers:
        raise UsageError(f"{manifest} lists no recordings")
    return speakers


# --- Enrolling -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rejection:
    label: str
    reason: str


@dataclasses.dataclass
class Outcome:
    """What happened to one speaker."""

    speaker_id: str
    files_total: int
    files_sent: int = 0
    files_accepted: int = 0
    status: str = "-"  # as the service last reported it; "-" if it has no such speaker
    speech_seconds: float = 0.0  # net speech behind the voiceprint
    remaining_seconds: float | None = None
    skipped: str | None = None  # why nothing was sent
    problem: str | None = None  # a failure that is not one file's
    rejected: list[Rejection] = dataclasses.field(default_factory=list)

    def record(self, status: str, enrolled_seconds: float, remaining: float | None) -> None:
        """Take in the service's view of the speaker."""
        self.status = status
        self.speech_seconds = enrolled_seconds
        self.remaining_seconds = remaining

    @property
    def failed(self) -> bool:
        if self.skipped is not None:
            return False
        return (
            self.problem is not None or bool(self.rejected) or self.status != SpeakerStatus.ENROLLED
        )

    @property
    def result(self) -> str:
        if self.skipped is not None:
            return f"skipped ({self.skipped})"
        if not self.failed:
            return "enrolled"
        reasons = [self.problem] if self.problem else []
        if self.rejected:
            reasons.append(f"{len(self.rejected)} of {self.files_total} file(s) rejected")
        if (
            self.problem is None
            and self.status != SpeakerStatus.ENROLLED
            and self.remaining_seconds
        ):
            reasons.append(f"needs {self.remaining_seconds:.1f} more seconds of speech")
        return "FAILED: " + "; ".join(reasons)


def _enroll_all(
    api: Client, speakers: dict[str, list[Recording]], *, overwrite: bool, progress: Progress
) -> list[Outcome]:
    """Enroll every speaker in turn. If the service stops answering, the rest are not tried."""
    outcomes = []
    answering = True
    for speaker_id, recordings in speakers.items():
        outcome = Outcome(speaker_id, files_total=len(recordings))
        outcomes.append(outcome)
        progress.start(speaker_id, len(recordings))
        if not answering:
            outcome.problem = "not tried: the service stopped answering"
        else:
            try:
                _enroll_speaker(api, recordings, outcome, overwrite=overwrite, progress=progress)
            except TransportError as error:
                outcome.problem = f"the service stopped answering ({error})"
                answering = False
        progress.finish(outcome)
    return outcomes


def _enroll_speaker(
    api: Client,
    recordings: list[Recording],
    outcome: Outcome,
    *,
    overwrite: bool,
    progress: Progress,
) -> None:
    if not recordings:
        outcome.problem = "no .wav, .flac or .ogg files in its folder"
        return
    try:
        speaker = api.get_speaker(outcome.speaker_id)
    except ApiError as error:
        if error.code != "speaker_not_found":
            outcome.problem = f"could not look the speaker up: {error}"
            return
    else:
        outcome.record(
            speaker.status, speaker.enrolled_speech_seconds, speaker.remaining_speech_seconds
        )
        if outcome.status == SpeakerStatus.OPTED_OUT:
            outcome.skipped = "opted out"
            return
        if outcome.status == SpeakerStatus.ENROLLED and not overwrite:
            outcome.skipped = "already enrolled"
            return
    for recording in recordings:
        _send(api, recording, outcome)
        progress.advance()


def _send(api: Client, recording: Recording, outcome: Outcome) -> None:
    """Upload one recording. The first accepted upload replaces any earlier voiceprint."""
    try:
        enrolled = api.enroll(
            outcome.speaker_id, recording.path, replace=outcome.files_accepted == 0, bulk=True
        )
    except OSError as error:  # the file itself could not be read
        outcome.rejected.append(Rejection(recording.label, f"could not read the file: {error}"))
        return
    except ApiError as error:
        outcome.files_sent += 1
        outcome.rejected.append(Rejection(recording.label, str(error)))
        return
    outcome.files_sent += 1
    outcome.files_accepted += 1
    outcome.record(
        enrolled.status, enrolled.enrolled_speech_seconds, enrolled.remaining_speech_seconds
    )


# --- Reporting -------------------------------------------------------------------------------


class Progress:
    """A bar on a terminal, one line per speaker elsewhere, or nothing at all."""

    def __init__(self, total_files: int, stream: TextIO, *, quiet: bool) -> None:
        self.total = total_files
        self.stream = stream
        if quiet:
            self.style = "none"
        else:
            self.style = "bar" if stream.isatty() else "lines"
        self.done = 0
        self.speaker = ""
        self._speaker_start = 0
        self._speaker_files = 0

    def start(self, speaker_id: str, files: int) -> None:
        self.speaker = speaker_id
        self._speaker_start = self.done
        self._speaker_files = files
        self._draw()

    def advance(self) -> None:
        self.done += 1
        self._draw()

    def finish(self, outcome: Outcome) -> None:
        self.done = self._speaker_start + self._speaker_files
        if self.style == "lines":
            print(
                f"{outcome.speaker_id}: {outcome.result} - {outcome.files_sent} file(s) sent, "
                f"{outcome.speech_seconds:.1f} s of speech enrolled",
                file=self.stream,
                flush=True,
            )
        self._draw()

    def close(self) -> None:
        if self.style == "bar":
            self.stream.write("\r" + " " * (self._width() - 1) + "\r")
            self.stream.flush()

    def _draw(self) -> None:
        if self.style != "bar":
            return
        width = self._width()
        filled = round(BAR_WIDTH * self.done / self.total) if self.total else BAR_WIDTH
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        line = f"[{bar}] {self.done}/{self.total} files  {self.speaker}"
        self.stream.write("\r" + line[: width - 1].ljust(width - 1))
        self.stream.flush()

    @staticmethod
    def _width() -> int:
        return shutil.get_terminal_size((80, 24)).columns


def _print_summary(outcomes: list[Outcome], out: TextIO) -> None:
    header = ["speaker_id", "files sent", "net speech (s)", "status", "result"]
    rows = [
        [o.speaker_id, str(o.files_sent), f"{o.speech_seconds:.1f}", o.status, o.result]
        for o in outcomes
    ]
    total_speech = sum(o.speech_seconds for o in outcomes)
    total_sent = sum(o.files_sent for o in outcomes)
    rows.append(["total", str(total_sent), f"{total_speech:.1f}", "", ""])
    _print_table(header, rows, out, right_aligned={1, 2})

    rejected = [(o.speaker_id, r) for o in outcomes for r in o.rejected]
    if rejected:
        print("\nRejected files:", file=out)
        for speaker_id, rejection in rejected:
            print(f"  {speaker_id}: {rejection.label} - {rejection.reason}", file=out)

    enrolled = sum(1 for o in outcomes if o.result == "enrolled")
    already = sum(1 for o in outcomes if o.skipped == "already enrolled")
    opted_out = sum(1 for o in outcomes if o.skipped == "opted out")
    failed = sum(1 for o in outcomes if o.failed)
    print(
        f"\n{len(outcomes)} speaker(s): {enrolled} enrolled, {already + opted_out} skipped "
        f"({already} already enrolled, {opted_out} opted out), {failed} failed; "
        f"{total_sent} file(s) sent, {len(rejected)} rejected",
        file=out,
    )


def _print_table(
    header: list[str], rows: list[list[str]], out: TextIO, *, right_aligned: Iterable[int]
) -> None:
    """The rows under the header, the last one (a total) below a second rule."""
    right = set(right_aligned)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("-" * width for width in widths)

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    print(line(header), file=out)
    print(rule, file=out)
    for row in rows[:-1]:
        print(line(row), file=out)
    print(rule, file=out)
    print(line(rows[-1]), file=out)
