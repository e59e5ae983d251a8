"""The machine's figures in the queue status."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mcp_trainer import machine


def test_the_first_cpu_figure_is_measured_not_the_zero_psutil_gives_a_first_call(tmp_path: Path) -> None:
    machine._cpu_measured_at = None  # as in a server that has not asked yet
    busy = threading.Event()

    def spin() -> None:
        while not busy.is_set():
            sum(range(10_000))

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        first = machine.machine_status(tmp_path)
    finally:
        busy.set()
        spinner.join()
    assert first.cpu_percent > 0.0
