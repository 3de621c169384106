"""The ``biometrics`` command as an operator runs it: a real process, real port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.api.helpers import speech_wav

BIOMETRICS = [sys.executable, "-m", "biometrics"]


def clean_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOMETRICS_")}
    env.update(HOME=str(tmp_path), HF_HUB_OFFLINE="1", BIOMETRICS_LOG_FORMAT="json")
    env.update(variables)
    return env


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
    result = subprocess.run(
        [*BIOMETRICS, "serve", "--port", "9"],
        env=clean_env(tmp_path, BIOMETRICS_MODEL_SOURCE="example/not-downloadable"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
        ready = _wait_ready(base, server)
        assert ready["model"]["source"] == str(production_shaped_folder)
        assert (tmp_path / "biometrics.db").is_file()  # the embedded default database
        with httpx.Client(base_url=base, timeout=60) as client:
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
