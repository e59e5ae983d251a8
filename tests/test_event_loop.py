"""The rule that keeps tool calls fast: no blocking file I/O runs on the event loop.

Every call that reads or writes the queue, the owner lock, a model directory or the machine's figures is
wrapped here to note the thread it runs in; a whole session of the API (and of the scheduler running a
real task) must make none of them on the event loop's thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.engine import local
from mcp_trainer.engine.owner import OwnerLock
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.service import maintenance, models, tasks

pytestmark = pytest.mark.anyio

BLOCKING: list[tuple[object, str]] = [
    *(
        (TaskStore, name)
        for name in ("get", "refresh", "live_now", "create", "update", "sweep_temp_files", "save_index")
    ),
    *((TaskStore, name) for name in ("find", "update_anywhere", "archive_ended")),
    (maintenance, "run_maintenance"),
    (OwnerLock, "try_acquire"),
    (OwnerLock, "holder_info"),
    (OwnerLock, "release"),
    *((models, name) for name in ("read_metadata", "list_metadata", "load_report", "delete_model_dir")),
    *((tasks, name) for name in ("machine_status", "check_dataset", "check_finetune")),
    (local, "process_group_alive"),
]


@pytest.fixture
def calls_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], set[str], threading.Thread]:
    """The blocking calls made on this (the event loop's) thread, and the names of all calls made."""
    loop_thread = threading.current_thread()
    on_loop: list[str] = []
    seen: set[str] = set()

    def guarded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.add(name)
            if threading.current_thread() is loop_thread:
                on_loop.append(name)
            return fn(*args, **kwargs)

        return call

    for owner, name in BLOCKING:
        monkeypatch.setattr(owner, name, guarded(name, getattr(owner, name)))
    return on_loop, seen, loop_thread


async def test_a_whole_session_makes_no_blocking_file_call_on_the_event_loop(
    calls_on_the_loop: tuple[list[str], set[str], threading.Thread],
    queue_dir: Path,
    models_dir: Path,
    blobs_csv: Path,
    slow_csv: Path,
) -> None:
    on_loop, seen, _ = calls_on_the_loop
    quick = {"task_type": "svm_classification", "data_source": str(blobs_csv), "target_column": "label"}
    slow = {"task_type": "svm_classification", "data_source": str(slow_csv), "target_column": "label"}
    async with TrainingService(queue_dir, models_dir, max_concurrent=1, poll_interval_s=0.05) as svc:
        done = await svc.submit({**quick, "n_trials": 2, "cv_folds": 2})
        queued = await svc.submit(quick, priority="low")
        await svc.cancel(queued.task_id)
        finished = await svc.wait(done.task_id, timeout_s=120)
        assert finished.status is TaskStatus.COMPLETED and finished.model_id is not None
        running = await svc.submit({**slow, "n_trials": 50, "n_parallel_trials": 1})
        await svc.record(running.task_id)
        await svc.list_tasks()
        await svc.queue_status()
        await svc.logs(done.task_id)
        await svc.list_models()
        await svc.model_info(finished.model_id)
        await svc.model_report(finished.model_id)
        # What subscriptions and completion read, a few times a second while a client watches.
        await svc.queue_digest()
        await svc.task_digest(done.task_id)
        await svc.log_stamp(done.task_id)
        await svc.model_digest(finished.model_id)
        await svc.task_ids("task_")
        await svc.model_ids("model_")
        await svc.pipeline_ids()
        await svc.predict(finished.model_id, rows=[{"x1": 0.0, "x2": 0.0, "shade": "a"}])
        await svc.wait(running.task_id, timeout_s=1.0)
        await svc.cancel(running.task_id)
        await svc.delete_model(finished.model_id)
        await svc.maintain(dry_run=True)
        await svc.maintain()
    assert on_loop == [], f"blocking calls on the event loop: {sorted(set(on_loop))}"
    # The wrappers saw the calls they guard: the test exercised what it claims to.
    assert {"get", "refresh", "update", "create", "try_acquire", "read_metadata", "machine_status"} <= seen
    assert {"find", "update_anywhere", "archive_ended", "run_maintenance"} <= seen
