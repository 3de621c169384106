"""Bulk-enroll recordings through a running biometrics service's REST API.

Usage::

    python scripts/enroll.py SOURCE [--url URL] [--overwrite] [--retries N]
                                    [--timeout SECONDS] [--quiet]

SOURCE is either

* a folder with one subfolder per speaker; the subfolder's name is the
  speaker_id and its .wav, .flac and .ogg files (directly inside it, taken in
  name order) are that speaker's recordings::

      recordings/alice/call-1.wav
      recordings/alice/call-2.flac
      recordings/bob/intro.ogg

* or a CSV manifest with the header ``speaker_id,path``; a relative path is
  relative to the manifest's folder. Speakers are enrolled in the order they
  first appear.

The run is resumable: a speaker the service already has ENROLLED is skipped
(``--overwrite`` re-enrolls it), and so is one that OPTED_OUT. Every other
speaker's voiceprint is rebuilt from SOURCE alone: its first accepted upload is
sent with ``replace=true``, so rerunning after an interrupted run never counts a
recording twice. A rejected file (bad audio, too little speech, too large) is
reported and the speaker's other files are still sent.

Connection errors and HTTP 429/5xx answers are retried with exponential backoff;
other 4xx answers are not. An upload that times out is not retried, because the
service may have enrolled it: rerun the script to resume.

Progress goes to stderr (a bar on a terminal, one line per speaker otherwise,
nothing with ``--quiet``); the summary table goes to stdout.

Exit status: 0 when every speaker is enrolled or skipped, 1 when any speaker
failed, 2 for usage errors (no such source, bad manifest, service unreachable).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import http.client
import json
import shutil
import sys
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8000"
CONTENT_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}
MANIFEST_HEADER = ["speaker_id", "path"]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
BAR_WIDTH = 30
ENROLLED = "ENROLLED"
OPTED_OUT = "OPTED_OUT"


class UsageError(Exception):
    """Wrong input or no service to talk to: nothing was enrolled."""


class TransportError(Exception):
    """The service did not answer, even after retries."""


# --- Reading the source -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recording:
    path: Path
    label: str  # how the summary names the file


def load_source(source: Path) -> dict[str, list[Recording]]:
    """Each speaker_id with its recordings, in enrollment order."""
    if source.is_dir():
        return load_folder(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return load_manifest(source)
    if source.exists():
        raise UsageError(f"{source} is neither a folder nor a .csv manifest")
    raise UsageError(f"{source} does not exist")


def load_folder(root: Path) -> dict[str, list[Recording]]:
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


def load_manifest(manifest: Path) -> dict[str, list[Recording]]:
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


# --- Talking to the service ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.body.get("error", f"http_{self.status}"))

    def describe(self) -> str:
        """An error reply in one line: status, machine code and the service's detail."""
        detail = self.body.get("detail")
        return f"HTTP {self.status} {self.code}" + (f": {detail}" if detail else "")


class Api:
    """The few endpoints the script uses, with retries.

    It speaks HTTP through :mod:`http.client` rather than :mod:`urllib.request`, which sends
    ``Connection: close``: the service then answers an upload over its size limit (413) and
    closes the connection while the body is still being sent, and urllib reports only a reset
    connection instead of the answer.
    """

    def __init__(self, base_url: str, *, timeout: float, retries: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--url must be an http:// or https:// URL, not {base_url!r}")
        self._secure = parts.scheme == "https"
        self._netloc = parts.netloc
        self._prefix = parts.path  # a service behind a proxy may live under a path

    def health(self) -> Reply:
        return self._request("GET", "/healthz")

    def get_speaker(self, speaker_id: str) -> Reply:
        return self._request("GET", f"/v1/speakers/{quote(speaker_id)}")

    def enroll(self, speaker_id: str, recording: Recording, *, replace: bool) -> Reply:
        path = f"/v1/speakers/{quote(speaker_id)}/enrollments"
        if replace:
            path += "?replace=true"
        content_type = CONTENT_TYPES[recording.path.suffix.lower()]
        return self._request("POST", path, recording.path.read_bytes(), content_type)

    def _request(
        self, method: str, path: str, data: bytes | None = None, content_type: str | None = None
    ) -> Reply:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                reply = self._send(method, self._prefix + path, data, content_type)
            except TimeoutError as error:
                # A timed-out upload may still be enrolled: sending it again could count it twice.
                if last or method != "GET":
                    raise TransportError(
                        f"{method} {path}: no answer within {self.timeout:g} s"
                    ) from error
            except (OSError, http.client.HTTPException) as error:
                if last:
                    raise TransportError(f"{method} {path}: {describe(error)}") from error
            else:
                if last or reply.status not in RETRY_STATUSES:
                    return reply
            time.sleep(min(BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _send(
        self, method: str, target: str, data: bytes | None, content_type: str | None
    ) -> Reply:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        connection_class = (
            http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
        )
        connection = connection_class(self._netloc, timeout=self.timeout)
        try:
            try:
                connection.request(method, target, body=data, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                # The service may answer before it has read the whole body, and close: read
                # that answer if it came (getresponse raises if not).
                if connection.sock is None:
                    raise
            response = connection.getresponse()
            return Reply(response.status, parse_body(response.read()))
        finally:
            connection.close()


def quote(speaker_id: str) -> str:
    return urllib.parse.quote(speaker_id, safe="")


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return {"detail": text[:200]} if text else {}
    return body if isinstance(body, dict) else {}


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


# --- Enrolling ------------------------------------------------------------------------------


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

    def record(self, speaker: dict[str, Any]) -> None:
        """Take in the service's view of the speaker (a speaker or an enrollment reply)."""
        self.status = str(speaker.get("status", self.status))
        self.speech_seconds = float(speaker.get("enrolled_speech_seconds", self.speech_seconds))
        remaining = speaker.get("remaining_speech_seconds")
        self.remaining_seconds = None if remaining is None else float(remaining)

    @property
    def failed(self) -> bool:
        if self.skipped is not None:
            return False
        return self.problem is not None or bool(self.rejected) or self.status != ENROLLED

    @property
    def result(self) -> str:
        if self.skipped is not None:
            return f"skipped ({self.skipped})"
        if not self.failed:
            return "enrolled"
        reasons = [self.problem] if self.problem else []
        if self.rejected:
            reasons.append(f"{len(self.rejected)} of {self.files_total} file(s) rejected")
        if self.problem is None and self.status != ENROLLED and self.remaining_seconds:
            reasons.append(f"needs {self.remaining_seconds:.1f} more seconds of speech")
        return "FAILED: " + "; ".join(reasons)


def enroll_all(
    api: Api, speakers: dict[str, list[Recording]], *, overwrite: bool, progress: Progress
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
                enroll_speaker(api, recordings, outcome, overwrite=overwrite, progress=progress)
            except TransportError as error:
                outcome.problem = f"the service stopped answering ({error})"
                answering = False
        progress.finish(outcome)
    return outcomes


def enroll_speaker(
    api: Api,
    recordings: list[Recording],
    outcome: Outcome,
    *,
    overwrite: bool,
    progress: Progress,
) -> None:
    if not recordings:
        outcome.problem = "no .wav, .flac or .ogg files in its folder"
        return
    reply = api.get_speaker(outcome.speaker_id)
    if reply.status == 200:
        outcome.record(reply.body)
        if outcome.status == OPTED_OUT:
            outcome.skipped = "opted out"
            return
        if outcome.status == ENROLLED and not overwrite:
            outcome.skipped = "already enrolled"
            return
    elif reply.code != "speaker_not_found":
        outcome.problem = f"could not look the speaker up: {reply.describe()}"
        return
    for recording in recordings:
        send(api, recording, outcome)
        progress.advance()


def send(api: Api, recording: Recording, outcome: Outcome) -> None:
    """Upload one recording. The first accepted upload replaces any earlier voiceprint."""
    try:
        reply = api.enroll(outcome.speaker_id, recording, replace=outcome.files_accepted == 0)
    except OSError as error:  # the file itself could not be read
        outcome.rejected.append(Rejection(recording.label, f"could not read the file: {error}"))
        return
    outcome.files_sent += 1
    if reply.status == 201:
        outcome.files_accepted += 1
        outcome.record(reply.body)
    else:
        outcome.rejected.append(Rejection(recording.label, reply.describe()))


# --- Reporting ------------------------------------------------------------------------------


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


def print_summary(outcomes: list[Outcome], out: TextIO) -> None:
    header = ["speaker_id", "files sent", "net speech (s)", "status", "result"]
    rows = [
        [o.speaker_id, str(o.files_sent), f"{o.speech_seconds:.1f}", o.status, o.result]
        for o in outcomes
    ]
    total_speech = sum(o.speech_seconds for o in outcomes)
    total_sent = sum(o.files_sent for o in outcomes)
    rows.append(["total", str(total_sent), f"{total_speech:.1f}", "", ""])
    print_table(header, rows, out, right_aligned={1, 2})

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


def print_table(
    header: list[str], rows: list[list[str]], out: TextIO, *, right_aligned: Iterable[int]
) -> None:
    right = set(right_aligned)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    print(line(header), file=out)
    print("  ".join("-" * width for width in widths), file=out)
    for row in rows[:-1]:
        print(line(row), file=out)
    print("  ".join("-" * width for width in widths), file=out)
    print(line(rows[-1]), file=out)


# --- Command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="enroll.py",
        description="Bulk-enroll recordings through a running biometrics service.",
    )
    parser.add_argument(
        "source",
        type=Path,
        help="a folder with one subfolder of recordings per speaker, or a speaker_id,path CSV",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="re-enroll speakers that are already enrolled, replacing their voiceprint",
    )
    parser.add_argument(
        "--retries",
        type=non_negative_int,
        default=3,
        metavar="N",
        help="retries after a connection error or HTTP 429/5xx (default 3)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="seconds to wait for each answer (default 60)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def check_service(api: Api) -> None:
    try:
        reply = api.health()
    except TransportError as error:
        raise UsageError(f"cannot reach the service at {api.base_url}: {error}") from None
    if reply.status != 200:
        raise UsageError(
            f"{api.base_url} does not look like the biometrics service: "
            f"GET /healthz answered {reply.describe()}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        api = Api(args.url, timeout=args.timeout, retries=args.retries)
        speakers = load_source(args.source)
        check_service(api)
    except UsageError as error:
        print(f"enroll.py: {error}", file=sys.stderr)
        return 2
    total_files = sum(len(recordings) for recordings in speakers.values())
    progress = Progress(total_files, sys.stderr, quiet=args.quiet)
    try:
        outcomes = enroll_all(api, speakers, overwrite=args.overwrite, progress=progress)
    finally:
        progress.close()
    print_summary(outcomes, sys.stdout)
    return 1 if any(outcome.failed for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
