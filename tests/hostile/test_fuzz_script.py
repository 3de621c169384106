"""scripts/fuzz.py: a short run as an operator starts it (a subprocess) prints its table and
writes its results; a property that fails makes it exit 1 with the falsifying example."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import strategies as st

from tests.hostile.properties import Property

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fuzz.py"


@pytest.fixture
def fuzz_script(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("fuzz_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    logger = logging.getLogger("biometrics")
    level = logger.level
    yield module
    logger.setLevel(level)  # main() quietens the service's warnings


def test_a_short_run_prints_its_table_and_writes_its_results(tmp_path):
    out = tmp_path / "fuzz.json"
    run = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--minutes",
            "0.05",
            "--target",
            "audio",
            "--seed",
            "7",
            "--out",
            out,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    header, *rows, total = run.stdout.splitlines()
    assert header.split() == ["target", "property", "cases", "failures", "seconds"]
    assert [row.split()[0] for row in rows] == ["audio", "audio"]
    results = json.loads(out.read_text())
    assert results["seed"] == 7 and results["failures"] == 0
    assert results["cases"] == int(total.split()[1]) > 100
    assert {p["property"] for p in results["properties"]} == {"container bytes", "raw PCM"}


def never_three(values: list[int]) -> None:
    assert 3 not in values, "found a 3"


def test_a_failing_property_exits_1_with_its_falsifying_example(
    fuzz_script, monkeypatch, tmp_path, capsys
):
    failing = Property("no threes", "parser", (st.lists(st.integers()),), never_three, 1)
    monkeypatch.setattr(fuzz_script, "PROPERTIES", (failing,))
    out = tmp_path / "fuzz.json"
    assert fuzz_script.main(["--minutes", "0.05", "--seed", "1", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "FAILED parser: no threes" in printed and "found a 3" in printed
    assert "values=[3]" in printed  # shrunk to the smallest case
    failure = json.loads(out.read_text())["properties"][0]["failure"]
    assert "values=[3]" in failure["example"] and isinstance(failure["seed"], int)
