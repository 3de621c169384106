"""The layer contracts in pyproject.toml catch what they forbid, directly or through
other modules.

They are checked here on a tiny package of the same name, so that a contract naming
no real module, or a checker that finds nothing, cannot pass unnoticed; CI runs the
same contracts on the real package (``lint-imports``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
ROOT = "biometrics"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    listed: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return listed


def forbidden_pairs() -> set[tuple[str, str]]:
    """(source, forbidden) for every pair some contract forbids."""
    return {
        (source, forbidden)
        for contract in contracts()
        for source in contract["source_modules"]
        for forbidden in contract["forbidden_modules"]
    }


def layer_package(root: Path, modules: dict[str, str]) -> Path:
    """A package named like ours: one empty subpackage per layer the contracts name,
    plus ``modules`` (dotted name -> source)."""
    for pair in forbidden_pairs():
        for layer in pair:
            write_module(root, layer + ".__init__", "")
    for name, source in modules.items():
        write_module(root, name, source)
    return root


def write_module(root: Path, dotted: str, source: str) -> None:
    path = root.joinpath(*dotted.split(".")).with_suffix(".py")
    for folder in [path.parent, *path.parent.parents]:
        if folder == root:
            break
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").touch()
    path.write_text(source, encoding="utf-8")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the real contracts over the package in ``root`` (it comes first on the path)."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(PYPROJECT), "--no-cache"],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_package_that_keeps_to_its_layers_passes(tmp_path: Path) -> None:
    result = lint_imports(layer_package(tmp_path, {}))
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in contracts():
        assert f"{contract['name']} KEPT" in result.stdout


def test_every_forbidden_import_is_reported(tmp_path: Path) -> None:
    pairs = forbidden_pairs()
    assert pairs, "pyproject.toml declares no layer contracts"
    violations = {
        f"{source}.uses_{forbidden.replace('.', '_')}": f"import {forbidden}\n"
        for source, forbidden in pairs
    }
    result = lint_imports(layer_package(tmp_path, violations))
    assert result.returncode == 1, result.stdout + result.stderr
    for source, forbidden in pairs:
        assert f"{source} is not allowed to import {forbidden}:" in result.stdout


def test_an_import_through_another_module_is_reported(tmp_path: Path) -> None:
    """The store reaching the API through a helper outside every layer, from inside a
    function (imported only when called) still breaks the store's contract."""
    package = layer_package(
        tmp_path,
        {
            f"{ROOT}.store.queries": f"from {ROOT} import helpers\n",
            f"{ROOT}.helpers": f"def respond():\n    from {ROOT}.api import routes\n",
            f"{ROOT}.api.routes": "",
        },
    )
    result = lint_imports(package)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{ROOT}.store is not allowed to import {ROOT}.api:" in result.stdout
    assert f"{ROOT}.store.queries -> {ROOT}.helpers" in result.stdout
    assert f"{ROOT}.helpers -> {ROOT}.api.routes" in result.stdout
