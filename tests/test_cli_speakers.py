"""The client commands as a person and a script use them, against a real server
(``live_server``, SQLite and PostgreSQL): ``speakers list|show|delete|opt-out``,
``enroll --speaker``, and the exit statuses that say what went wrong."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
from rich.console import Console

from biometrics import cli
from biometrics.bulk_enrollment import Outcome
from biometrics.cli.enroll import ProgressBar
from biometrics.soak.service import free_port
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.keys import KeyStore
from tests.recordings import ALICE, BOB, server_speaker, speech, write
from tests.test_cli import BIOMETRICS, clean_env
from tests.voices import wav_bytes


def biometrics(*argv: str) -> int:
    return cli.main(list(argv))


def alice_files(folder: Path) -> list[str]:
    """Two recordings of alice, about 10 s of speech: enough to enroll her."""
    return [
        str(write(folder / f"alice-{seed}.wav", wav_bytes(speech(ALICE, seed=seed))))
        for seed in (1, 2)
    ]


def test_enroll_one_speaker_then_list_show_opt_out_and_delete(live_server, tmp_path, capsys):
    url = ["--url", live_server.url]
    assert biometrics("enroll", "--speaker", "alice", *alice_files(tmp_path), *url) == 0
    out, _ = capsys.readouterr()
    assert "1 speaker(s): 1 enrolled" in out
    alice = server_speaker(live_server.url, "alice")
    assert alice is not None and alice["status"] == "ENROLLED"
    # A folder of one speaker's files works the same; bob has too little speech yet.
    write(tmp_path / "bob" / "1.wav", wav_bytes(speech(BOB, seed=3, seconds=3.0)))
    assert biometrics("enroll", "--speaker", "bob", str(tmp_path / "bob"), *url, "--json") == 1
    (bob,) = json.loads(capsys.readouterr().out)
    assert (bob["speaker_id"], bob["status"], bob["failed"]) == ("bob", "PENDING_ENROLLMENT", True)
    assert bob["result"].startswith("FAILED: needs ") and bob["files_sent"] == 1

    # A table a person reads, one line per speaker (stdout is not a terminal here).
    assert biometrics("speakers", "list", *url) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert out.split()[:3] == ["SPEAKER", "NAME", "STATUS"]
    assert rows["alice"][1:3] == ["ENROLLED", f"{alice['enrolled_speech_seconds']:.1f}"]
    assert rows["bob"][1] == "PENDING_ENROLLMENT" and err == ""
    assert biometrics("speakers", "list", "--limit", "1", *url) == 0
    out, err = capsys.readouterr()
    assert "alice" in out and "bob" not in out and "--all lists every one" in err
    # JSON for scripts, in the API's forms.
    assert biometrics("speakers", "list", "--all", "--json", *url) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["speaker_id"] for s in listed] == ["alice", "bob"]
    assert listed[0]["created_at"] == alice["created_at"]

    assert biometrics("speakers", "show", "alice", *url) == 0
    shown = dict(
        re.split(r"\s{2,}", line, maxsplit=1) for line in capsys.readouterr().out.splitlines()
    )
    assert (shown["status"], shown["still needed"], shown["expires"]) == (
        "ENROLLED",
        "nothing",
        "not set",
    )
    assert biometrics("speakers", "show", "alice", "--json", *url) == 0
    assert json.loads(capsys.readouterr().out)["model"]["sha256"] == alice["model"]["sha256"]

    # Nothing is deleted unasked: off a terminal --yes is required.
    assert biometrics("speakers", "opt-out", "bob", *url) == 2
    assert "add --yes to opt out bob" in capsys.readouterr().err
    assert server_speaker(live_server.url, "bob")["status"] == "PENDING_ENROLLMENT"
    assert biometrics("speakers", "opt-out", "bob", "--yes", *url) == 0
    assert "opted out bob" in capsys.readouterr().out
    assert server_speaker(live_server.url, "bob")["status"] == "OPTED_OUT"

    assert biometrics("speakers", "delete", "alice", "nobody", "--yes", "--json", *url) == 3
    out, err = capsys.readouterr()
    assert json.loads(out) == [
        {"speaker_id": "alice", "deleted": True},
        {"speaker_id": "nobody", "deleted": False, "error": "speaker_not_found"},
    ]
    assert "nobody: no such speaker" in err
    assert server_speaker(live_server.url, "alice") is None


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_delete_asks_on_a_terminal_and_does_nothing_unless_told_yes(
    live_server, tmp_path, capsys, monkeypatch
):
    url = ["--url", live_server.url]
    assert biometrics("enroll", "--speaker", "alice", *alice_files(tmp_path), *url) == 0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert biometrics("speakers", "delete", "alice", *url) == 1
    assert "nothing was done" in capsys.readouterr().err
    assert server_speaker(live_server.url, "alice") is not None
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert biometrics("speakers", "delete", "alice", *url) == 0
    assert "deleted alice" in capsys.readouterr().out
    assert server_speaker(live_server.url, "alice") is None


def test_exit_statuses_say_what_kind_of_failure_it_was(live_server, tmp_path, capsys):
    url = ["--url", live_server.url]
    assert biometrics("speakers", "show", "nobody", *url) == 3
    err = capsys.readouterr().err
    assert err.startswith("biometrics speakers show: error: HTTP 404 speaker_not_found")
    # It names the request, whose id the service's log lines carry.
    assert re.search(r"\[request [0-9a-f]{32}\]$", err.strip())

    assert biometrics("speakers", "list", *url, "--api-key", "bmk_nope_nope") == 4
    assert "HTTP 401 unauthenticated" in capsys.readouterr().err
    reader = KeyStore(Database(live_server.settings.database_url)).create(Role.READ, "r")[1]
    assert biometrics("speakers", "list", *url, "--api-key", reader) == 0
    capsys.readouterr()
    assert biometrics("speakers", "delete", "x", "--yes", *url, "--api-key", reader) == 4
    assert "HTTP 403 forbidden" in capsys.readouterr().err

    noise = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    bad = write(tmp_path / "noise.wav", noise)
    assert biometrics("verify", "alice", str(bad), *url) == 6
    assert "HTTP 400 invalid_audio" in capsys.readouterr().err

    down = f"http://127.0.0.1:{free_port()}"
    assert biometrics("speakers", "list", "--url", down, "--retries", "0") == 5
    assert f"cannot reach the service at {down}" in capsys.readouterr().err
    assert biometrics("speakers", "list", "--url", "localhost:8000") == 2


def test_url_and_key_come_from_the_environment(live_server, tmp_path):
    result = subprocess.run(
        [*BIOMETRICS, "speakers", "list", "--json"],
        env=clean_env(
            tmp_path, BIOMETRICS_URL=live_server.url, BIOMETRICS_API_KEY=live_server.api_key
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert "no speakers yet" not in result.stdout  # the hint goes to stderr


def test_the_progress_bar_counts_files_and_names_each_speaker_as_it_finishes():
    terminal = Terminal()
    shown = Console(file=terminal, force_terminal=True, width=100, color_system=None)
    with ProgressBar(4, shown) as bar:
        bar.start("alice", 2)
        bar.advance()
        bar._bar.refresh()
        assert "alice" in terminal.getvalue() and "1/4" in terminal.getvalue()
        bar.finish(Outcome("alice", files_total=2, status="ENROLLED"))
        bar.start("bob", 2)
        bar._bar.refresh()
        assert "2/4" in terminal.getvalue()
    assert "alice: enrolled" in terminal.getvalue()
