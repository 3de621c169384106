"""schemathesis, a client generated from ``/openapi.json``, against ``biometrics serve`` in a
subprocess with an admin key: every operation, in every phase (the document's examples,
its boundaries, random data, and stateful sequences along its links), with a bounded
number of cases, and not one failure: no 5xx, every status, header and body as
documented, invalid requests refused.

One check is left out: ``positive_data_acceptance`` (a request the schema allows must
succeed). Some refusals are the API's point and no JSON Schema can say them: an
``expires_at`` in the past, a retry of delivered dead letters, an id with an unprintable
character. Each of those is a documented 400 with a detail that says why.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from biometrics.soak.receiver import WebhookSink
from biometrics.soak.service import Service, start_service

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EVENTS = "streamCallEvents"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, model_folder: Path) -> Iterator[Service]:
    if not SCHEMATHESIS.exists():
        pytest.skip(f"schemathesis is not installed beside {sys.executable} (the test extra)")
    folder = tmp_path_factory.mktemp("schemathesis")
    with WebhookSink(secrets.token_hex(16)) as sink:
        running = start_service(
            folder, f"sqlite:///{folder / 'biometrics.db'}", str(model_folder), sink
        )
        try:
            yield running
        finally:
            running.stop()


def schemathesis(service: Service, folder: Path, *options: str) -> str:
    """``schemathesis run`` over the live document, from ``folder`` (where it keeps its
    cache); its report, after asserting it passed."""
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{service.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {service.admin_key}",
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--no-color",
        "--exclude-checks",
        "positive_data_acceptance",
        *options,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",  # real WAVs among the uploads
    }
    run = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=400)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-12000:]
    return report


def operations_tested(report: str) -> tuple[int, int]:
    found = re.search(r"Tested: (\d+)", report)
    total = re.search(r"Operations:\s+\d+ selected / (\d+) total", report)
    assert found and total, report[-4000:]
    return int(found.group(1)), int(total.group(1))


def test_schemathesis_finds_no_failure_in_any_operation(service, tmp_path):
    # A call's events stream until the call ends: run first, while no call exists, each
    # request is answered at once (404 call_not_found, 400 for a bad id). The rest of the
    # run then claims participants, which makes calls.
    # (It has no links: a stateful phase of it alone would have nothing to follow.)
    events = schemathesis(
        service, tmp_path, "--include-operation-id", EVENTS, "--phases", "examples,coverage,fuzzing"
    )
    rest = schemathesis(service, tmp_path, "--exclude-operation-id", EVENTS)
    operations, total = operations_tested(rest)
    assert operations_tested(events)[0] == 1 and operations == total - 1
    assert "Stateful" in rest and "API Links" in rest
