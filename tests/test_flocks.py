"""The record lock: nested holds keep it, and a process that holds it too long (stopped, hung) makes
others fail in words naming it instead of waiting forever."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_trainer import TrainerError, TrainingService
from mcp_trainer.engine import flocks
from mcp_trainer.engine.flocks import holders
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.store import TaskStore

pytestmark = pytest.mark.anyio

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def hold_in_another_process(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def test_a_nested_hold_keeps_the_lock_until_the_outermost_one_ends(queue_dir: Path) -> None:
    store = TaskStore(QueueLayout.at(queue_dir))
    lock = store.layout.records_lock
    with store.locked():
        with store.locked():
            assert holders(lock) == {os.getpid()}
        assert holders(lock) == {os.getpid()}  # the inner release did not drop it
    assert holders(lock) == set()
    store.close()


def test_a_lock_held_too_long_by_another_process_fails_naming_it_and_changes_nothing(
    queue_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flocks, "LOCK_WAIT_S", 0.3)
    store = TaskStore(QueueLayout.at(queue_dir))
    holder = hold_in_another_process(store.layout.records_lock)
    try:
        held = f"locked by pid {holder.pid} for over 0.3 s"
        with pytest.raises(TrainerError, match=held) as caught, store.locked():
            pass
        assert "stopped or hung" in str(caught.value)
    finally:
        release(holder)
    with store.locked():  # free again: taken at once
        pass
    store.close()


async def test_a_submit_while_a_stopped_process_holds_the_lock_is_refused_in_words(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flocks, "LOCK_WAIT_S", 0.3)
    spec = {"task_type": "svm_classification", "data_source": str(blobs_csv), "target_column": "label"}
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        holder = hold_in_another_process(svc._parts().store.layout.records_lock)
        try:
            with pytest.raises(TrainerError, match="Nothing was changed"):
                await svc.submit(spec)
        finally:
            release(holder)
        assert (await svc.list_tasks()).total == 0
        assert (await svc.submit(spec)).task_id  # and works once it is released


def test_holders_is_empty_for_a_file_nobody_locks(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    assert holders(path) == set()
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert holders(path) == {os.getpid()}
    os.close(fd)
