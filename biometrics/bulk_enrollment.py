"""Bulk enrollment: many speakers' recordings sent through a running service's REST API.

The source is a folder with one subfolder of recordings per speaker, or a CSV manifest
``speaker_id,path`` (``load_sources``), or one speaker's recordings (``load_speaker``).
``run`` enrolls it over ``biometrics.client.Client``, one speaker at a time, telling a
``Progress`` as it goes, and returns each speaker's ``Outcome`` (``biometrics enroll``
shows them). The run is resumable: a speaker the
service has ENROLLED is skipped unless ``overwrite``, one that OPTED_OUT always is, and every
other speaker's voiceprint is rebuilt from the source alone (its first accepted upload
replaces any earlier one), so a rerun never counts a recording twice. A rejected file is
reported and the speaker's other files are still sent; if the service stops answering, the
speakers left are not tried.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from biometrics.client import CONTENT_TYPES, ApiError, Client, TransportError
from biometrics.statuses import SpeakerStatus

MANIFEST_HEADER = ["speaker_id", "path"]


class UsageError(Exception):
    """A source that cannot be read, or a server that is not the service: nothing was
    sent."""


def run(
    api: Client,
    speakers: dict[str, list[Recording]],
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Enroll every speaker in turn, telling ``progress`` as it goes; what happened to each.
    A service that does not answer at first raises TransportError, a server that is not
    the service UsageError; if it stops answering later, the speakers left are not tried."""
    _check_service(api)
    shown = Progress() if progress is None else progress
    outcomes = []
    answering = True
    for speaker_id, recordings in speakers.items():
        outcome = Outcome(speaker_id, files_total=len(recordings))
        outcomes.append(outcome)
        shown.start(speaker_id, len(recordings))
        if not answering:
            outcome.problem = "not tried: the service stopped answering"
        else:
            try:
                _enroll_speaker(api, recordings, outcome, overwrite=overwrite, progress=shown)
            except TransportError as error:
                outcome.problem = f"the service stopped answering ({error})"
                answering = False
        shown.finish(outcome)
    return outcomes


def _check_service(api: Client) -> None:
    try:
        api.health()
    except ApiError as error:
        raise UsageError(
            f"{api.base_url} does not look like the biometrics service: "
            f"GET /healthz answered {error}"
        ) from None


class Progress:
    """Told of each speaker and file as a run goes; this one shows nothing."""

    def start(self, speaker_id: str, files: int) -> None:
        """``speaker_id``'s ``files`` are next."""

    def advance(self) -> None:
        """One more file was sent (or could not be read)."""

    def finish(self, outcome: Outcome) -> None:
        """The speaker is done: ``outcome`` says how it went."""


# --- Reading the source ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recording:
    path: Path
    label: str  # how the summary names the file


def load_sources(sources: list[Path]) -> dict[str, list[Recording]]:
    """Each speaker_id with its recordings from every source, in enrollment order."""
    speakers: dict[str, list[Recording]] = {}
    for source in sources:
        for speaker_id, recordings in load_source(source).items():
            _add(speakers.setdefault(speaker_id, []), recordings)
    return speakers


def load_speaker(speaker_id: str, paths: list[Path]) -> dict[str, list[Recording]]:
    """One speaker's recordings: files, or folders of them (their audio files)."""
    recordings: list[Recording] = []
    for path in paths:
        if path.is_dir():
            found = _recordings_in(path)
            if not found:
                raise UsageError(f"{path} holds no .wav, .flac or .ogg files")
            _add(recordings, found)
        elif path.is_file():
            if path.suffix.lower() not in CONTENT_TYPES:
                raise UsageError(f"{path} is not a .wav, .flac or .ogg file")
            _add(recordings, [Recording(path, path.name)])
        else:
            raise UsageError(f"{path} does not exist")
    return {speaker_id: recordings}


def _add(recordings: list[Recording], more: list[Recording]) -> None:
    """Each file once, in the order first named."""
    for recording in more:
        if all(known.path != recording.path for known in recordings):
            recordings.append(recording)


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
    return {folder.name: _recordings_in(folder) for folder in folders}


def _recordings_in(folder: Path) -> list[Recording]:
    """A folder's audio files, in name order."""
    return [
        Recording(path, path.name)
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in CONTENT_TYPES
    ]


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
            _add(speakers.setdefault(speaker_id, []), [Recording(path, name)])
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
