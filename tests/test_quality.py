"""Lint and strict typing are part of the suite, so the README's one test command checks them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_no_problems() -> None:
    out = run("ruff", "check", "mcp_trainer", "tests", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_code_is_formatted() -> None:
    out = run("ruff", "format", "--check", "mcp_trainer", "tests", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_passes_on_the_package() -> None:
    out = run("mypy")
    assert out.returncode == 0, out.stdout + out.stderr
