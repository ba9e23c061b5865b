"""The code's shape, checked on every run: types, layers, lint, module size, explained ignores.

``mypy --strict`` and the import-linter contracts are configured in ``pyproject.toml``; these
tests run them so that ``./dev test`` fails the moment either is broken.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["mypy"]["files"]
MAX_MODULE_LINES = 500
MAX_TYPE_IGNORES = 20
CODED_AND_EXPLAINED = re.compile(r"# type: ignore\[[a-z-]+(, ?[a-z-]+)*\]\s+#\s*\S")


def project_modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_mypy_checks_every_package_the_project_ships() -> None:
    shipped = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(name.rstrip("*") for name in shipped) == sorted(PACKAGES)


def test_mypy_strict_finds_nothing() -> None:
    report, errors, status = mypy_api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert status == 0, report + errors


def test_ruff_finds_nothing() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [str(ruff), *command], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_project_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in project_modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_every_type_ignore_names_its_code_and_why() -> None:
    ignores = [
        (f"{path.relative_to(ROOT)}:{number}", line.strip())
        for path in project_modules()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "# type: ignore" in line
    ]
    unexplained = [(where, line) for where, line in ignores if not CODED_AND_EXPLAINED.search(line)]
    assert unexplained == []
    assert len(ignores) <= MAX_TYPE_IGNORES


def test_test_modules_have_names_of_their_own() -> None:
    """pytest collects tests/unit, tests/integration, tests/e2e and tests/browser together, with
    rootdir-relative module names: two test files with one basename stop the whole collection."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(name for name in set(names) if names.count(name) > 1) == []
