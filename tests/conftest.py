"""Shared fixtures: a queue and a models directory in tmp_path, and small real CSV datasets."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_trainer.engine import starts
from mcp_trainer.engine.admission import Thresholds


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# The machine running the suite is shared: other work's CPU, a crowded disk, must not hold tasks back here.
# The thresholds are tested on their own (tests/test_resources.py).
UNGATED = ("--cpu-threshold", "100", "--memory-threshold", "100", "--disk-threshold", "100")


@pytest.fixture(autouse=True)
def ungated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starts, "DEFAULT_THRESHOLDS", Thresholds(100.0, 100.0, 100.0))


@pytest.fixture
def queue_dir(tmp_path: Path) -> Path:
    return tmp_path / "queue"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "trained_models"


@pytest.fixture
def blobs_csv(tmp_path: Path) -> Path:
    """120 rows, two numeric features, one categorical feature, a string target with 3 classes."""
    rng = random.Random(0)
    rows: list[list[object]] = []
    centers = {"red": (0.0, 0.0), "green": (3.0, 3.0), "blue": (0.0, 4.0)}
    for i in range(120):
        label = list(centers)[i % 3]
        cx, cy = centers[label]
        rows.append(
            [round(cx + rng.gauss(0, 0.7), 3), round(cy + rng.gauss(0, 0.7), 3), rng.choice("abc"), label]
        )
    return write_csv(tmp_path / "blobs.csv", ["x1", "x2", "shade", "label"], rows)


@pytest.fixture
def regression_csv(tmp_path: Path) -> Path:
    """100 rows, y1 = 2*a - b + noise, y2 = a + b (two numeric targets)."""
    rng = random.Random(1)
    rows: list[list[object]] = []
    for _ in range(100):
        a, b = rng.uniform(-2, 2), rng.uniform(-2, 2)
        rows.append([round(a, 4), round(b, 4), round(2 * a - b + rng.gauss(0, 0.1), 4), round(a + b, 4)])
    return write_csv(tmp_path / "reg.csv", ["a", "b", "y1", "y2"], rows)


@pytest.fixture
def slow_csv(tmp_path: Path) -> Path:
    """Enough rows that an SVC cross-validation takes a noticeable time per trial (for cancel tests)."""
    rng = random.Random(2)
    rows = [[*(round(rng.gauss(0, 1), 4) for _ in range(20)), rng.choice(["p", "q"])] for _ in range(3000)]
    return write_csv(tmp_path / "slow.csv", [*(f"f{i}" for i in range(20)), "label"], rows)


@pytest.fixture
def make_csv(tmp_path: Path) -> Callable[[str, list[str], list[list[object]]], Path]:
    def make(name: str, header: list[str], rows: list[list[object]]) -> Path:
        return write_csv(tmp_path / name, header, rows)

    return make


@pytest.fixture
def server_process(queue_dir: Path, models_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `python -m mcp_trainer` server on stdio (stdin held open), owning the queue."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_trainer",
            "--queue-dir",
            str(queue_dir),
            "--models-dir",
            str(models_dir),
            "--max-concurrent",
            "1",
            *UNGATED,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
