"""The ``biometrics`` command as an operator runs it: a real process, real port; and its
help, version and verify command in-process."""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from biometrics import cli
from biometrics.soak.service import free_port
from biometrics.store.crypto import Key
from tests.api.helpers import speech_wav

ROOT = Path(__file__).resolve().parents[1]
BIOMETRICS = [sys.executable, "-m", "biometrics"]
UNREACHABLE_POSTGRES = "postgresql+psycopg://nobody:x@127.0.0.1:1/db"


def clean_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOMETRICS_")}
    env.update(HOME=str(tmp_path), HF_HUB_OFFLINE="1", BIOMETRICS_LOG_FORMAT="json")
    env.update(PYTHONPATH=str(ROOT))  # this checkout's package, not an installed one
    env.update(variables)
    return env


def run(tmp_path: Path, *argv: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BIOMETRICS, *argv],
        env=clean_env(tmp_path, **variables),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_invalid_configuration_fails_at_start_naming_the_variable(tmp_path):
    result = subprocess.run(
        [*BIOMETRICS, "serve"],
        env=clean_env(tmp_path, BIOMETRICS_THRESHOLD="lots"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "BIOMETRICS_THRESHOLD='lots' is not a valid float" in result.stderr


def test_an_unreachable_model_source_refuses_to_start(tmp_path):
    result = run(
        tmp_path,
        *("serve", "--port", str(free_port())),
        BIOMETRICS_MODEL_SOURCE="example/not-downloadable",
    )
    assert result.returncode == 2
    assert "'example/not-downloadable'" in result.stderr
    assert "BIOMETRICS_MODEL_SOURCE=/path/to/that/folder" in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    subprocess.run(
        [*BIOMETRICS, "db", "upgrade"],
        env=clean_env(tmp_path, BIOMETRICS_DATABASE_URL=url),
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    tables = sa.inspect(sa.create_engine(url)).get_table_names()
    assert {"speakers", "voiceprints", "enrollment_records", "verdicts"} <= set(tables)


def test_serve_runs_a_production_shaped_model_by_setting_the_source_alone(
    production_shaped_folder,
    tmp_path,
):
    port = free_port()
    server = subprocess.Popen(
        [*BIOMETRICS, "serve", "--port", str(port)],
        env=clean_env(tmp_path, BIOMETRICS_MODEL_SOURCE=str(production_shaped_folder)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        key = _first_admin_key(server)
        ready = _wait_ready(base, server)
        assert ready["model"]["source"] == str(production_shaped_folder)
        assert ready["auth"] == "on" and key not in json.dumps(ready)
        assert (tmp_path / "biometrics.db").is_file()  # the embedded default database
        refused = httpx.get(f"{base}/v1/speakers", timeout=10)
        assert refused.status_code == 401 and refused.headers["www-authenticate"]
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            for seed in (1, 2, 3, 4):
                enrolled = client.post(
                    "/v1/speakers/ada/enrollments",
                    files={"audio": ("a.wav", speech_wav(7.0, seed), "audio/wav")},
                )
                assert enrolled.status_code == 201, enrolled.text
            assert enrolled.json()["status"] == "ENROLLED"
            verdict = client.post(
                "/v1/verify",
                data={"speaker_id": "ada"},
                files={"audio": ("v.wav", speech_wav(4.0, 9), "audio/wav")},
            ).json()
            assert verdict["decision"] in ("ACCEPT", "REJECT")
            assert verdict["model"]["source"] == str(production_shaped_folder)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "huggingface.co" not in output
    # The quick start made the voiceprints' key beside the database, for its owner alone.
    key_file = tmp_path / "biometrics.db.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    # Started again with another key, it refuses, naming the key the voiceprints need.
    stored = Key.of(base64.b64decode(key_file.read_text())).key_id
    refused = run(
        tmp_path,
        *("serve", "--port", str(free_port())),
        BIOMETRICS_MODEL_SOURCE=str(production_shaped_folder),
        BIOMETRICS_ENCRYPTION_KEY=Key.generate().encoded(),
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"biometrics: error: voiceprints are encrypted under key {stored},")


def _first_admin_key(server: subprocess.Popen) -> str:
    """The admin key a first start prints: alone on the last line of its notice."""
    assert server.stdout is not None
    lines = []
    for line in server.stdout:
        lines.append(line)
        if line.startswith("bmk_"):
            assert "Authorization: Bearer " + line.strip() in "".join(lines)
            return line.strip()
    pytest.fail("no admin key printed:\n" + "".join(lines))


def _wait_ready(base: str, server: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"server exited: {server.stdout.read() if server.stdout else ''}")
        try:
            response = httpx.get(f"{base}/readyz", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail("server did not become ready")


# --- Start-up errors are one line -------------------------------------------------------------


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve", "--port", "0"]])
def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path, command):
    line = one_line_error(
        run(
            tmp_path,
            *command,
            BIOMETRICS_DATABASE_URL=UNREACHABLE_POSTGRES,
            BIOMETRICS_MODEL_SOURCE="example/not-downloadable",  # never reached
        )
    )
    assert line.startswith("biometrics: error: cannot use the database")
    assert "nobody:***@127.0.0.1:1/db" in line and "BIOMETRICS_DATABASE_URL" in line
    assert "not-downloadable" not in line


def test_a_sqlite_file_in_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "no" / "such" / "folder" / "biometrics.db"
    line = one_line_error(
        run(tmp_path, "db", "upgrade", BIOMETRICS_DATABASE_URL=f"sqlite:///{path}")
    )
    assert "cannot use the database" in line and str(path) in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_sqlite_file_in_a_read_only_folder_is_one_line_and_exit_2(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    url = f"sqlite:///{folder / 'biometrics.db'}"
    line = one_line_error(run(tmp_path, "db", "upgrade", BIOMETRICS_DATABASE_URL=url))
    assert "cannot use the database" in line


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_serve_on_a_busy_port_says_so_before_loading_the_model(tmp_path, busy_port):
    line = one_line_error(
        run(
            tmp_path,
            *("serve", "--port", str(busy_port)),
            BIOMETRICS_MODEL_SOURCE="example/not-downloadable",  # loading it would fail
        )
    )
    assert f"cannot listen on 127.0.0.1:{busy_port}" in line and "--port" in line


# --- Help and version -----------------------------------------------------------------------------


def test_version_is_the_packages(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert (
        capsys.readouterr().out.strip() == f"biometrics {importlib.metadata.version('biometrics')}"
    )


def subcommands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Every command and action below ``parser``, by its full name (``speakers list``)."""
    found = {}
    for chooser in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        for name, command in chooser.choices.items():
            found[prefix + name] = command
            found.update(subcommands(command, prefix + name + " "))
    return found


def test_help_is_plain_text_and_every_option_says_its_default():
    parser = cli.build_parser()
    parsers = {"biometrics": parser, **subcommands(parser)}
    assert set(parsers) >= {
        "serve",
        "db",
        "cohort",
        "calibrate",
        "keys create",
        "enroll",
        "verify",
        "simulate-call",
        "speakers list",
        "speakers show",
        "speakers delete",
        "speakers opt-out",
    }
    for name, command in parsers.items():
        text = command.format_help()
        for markup in ("``", ":class:", ":func:", ":meth:"):
            assert markup not in text, (name, markup)
        for action in command._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            assert action.help, (name, action.dest)
            if action.nargs == 0 or action.required:  # a flag, or nothing to default
                continue
            shown = command._get_formatter()._expand_help(action)
            assert "default" in shown, (name, action.dest, shown)
    # The commands people type most show examples, and the exit statuses they can expect.
    for name in ("biometrics", "speakers", "enroll", "verify", "simulate-call"):
        epilog = parsers[name].format_help().split("examples:", 1)
        assert len(epilog) == 2 and "Exit status: 0" in epilog[1], name
        assert f"biometrics {'' if name == 'biometrics' else name}".strip() in epilog[1]


# --- verify ---------------------------------------------------------------------------------------


def test_verify_prints_the_verdict_and_exits_0_only_on_accept(live_server, tmp_path, capsys):
    with httpx.Client(base_url=live_server.url, headers=live_server.headers, timeout=60) as http:
        for seed in (1, 2):
            http.post(
                "/v1/speakers/ada/enrollments",
                content=speech_wav(6.0, seed),
                headers={"content-type": "audio/wav"},
            ).raise_for_status()
    recording = tmp_path / "call.wav"
    recording.write_bytes(speech_wav(4.0, 9))
    argv = ["verify", "ada", str(recording), "--url", live_server.url]

    assert cli.main([*argv, "--threshold", "0"]) == 0
    assert capsys.readouterr().out.startswith("ACCEPT ada, score ")
    assert cli.main([*argv, "--threshold", "100"]) == 1
    assert "REJECT ada" in capsys.readouterr().out
    assert cli.main([*argv, "--json"]) in (0, 1)
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["speaker_id"] == "ada" and verdict["model"]["sha256"]

    assert cli.main(["verify", "nobody", str(recording), "--url", live_server.url]) == 1
    assert "SPEAKER_NOT_ENROLLED nobody" in capsys.readouterr().out
    assert cli.main(["verify", "ada", str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav is not a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("script", "command"), [("enroll", "enroll"), ("simulate_call", "simulate-call")]
)
def test_the_old_scripts_run_the_command(tmp_path, script, command):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), "--help"],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: biometrics {command} ")
