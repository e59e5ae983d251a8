"""The local executor: each task runs in a worker process on this machine, and is stopped for real.

Each task gets its own process, which makes itself the leader of a new process group, so that a stop
reaches everything the task started (joblib/loky helpers, data loaders) with one `killpg`.

Start method: forkserver. `fork` from the server would copy a process that runs threads (anyio's worker
threads, the MCP transport), which can deadlock the child; `spawn` pays the full import of scikit-learn,
pandas and Optuna (~3 s here), or of torch and transformers (~5 s), for every task. A forkserver is a
clean single-threaded process that imports those modules once and forks each worker from there in
milliseconds; there is one per training stack (forkservers.py). The server process itself never imports
them (invariant: the server stays light).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import anyio
import psutil

from mcp_trainer.engine import forkservers
from mcp_trainer.engine.executor import Executor, RunHandle, WorkerMessage
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.processes import kill_process_group, process_group_alive
from mcp_trainer.engine.worker import job_main, worker_main
from mcp_trainer.errors import TrainerError
from mcp_trainer.offload import off_loop
from mcp_trainer.polling import poll_until
from mcp_trainer.records import TaskRecord

__all__ = ["ProcessExecutor", "WorkerHandle"]


@dataclass
class WorkerHandle(RunHandle):
    task_id: str
    process: BaseProcess
    conn: Connection
    pid: int
    started_at: float | None
    stop_requested: bool = False

    def exit_description(self) -> str:
        code = self.process.exitcode
        return (
            f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        )


def _handle(handle: RunHandle) -> WorkerHandle:
    assert isinstance(handle, WorkerHandle), "a run of another executor"
    return handle


class ProcessExecutor(Executor):
    """Starts, watches and stops worker processes."""

    def __init__(
        self,
        layout: QueueLayout,
        models_dir: Path,
        *,
        stop_grace_s: float = 0.3,
        term_grace_s: float = 0.3,
        script_dirs: tuple[Path, ...] = (),
    ) -> None:
        self.layout = layout
        self.models_dir = models_dir
        self.script_dirs = script_dirs  # where its workers may run scripts from (--allow-scripts-from)
        self.stop_grace_s = stop_grace_s
        self.term_grace_s = term_grace_s
        self._ctx = multiprocessing.get_context("forkserver")

    def warm_up(self, task_types: Iterable[str] = ()) -> None:
        """Start the forkserver of the tabular tasks, and of `task_types`' stacks, now rather than on the
        first task of each. Blocking."""
        for stack in dict.fromkeys(["sklearn", *map(forkservers.stack_of_task, task_types)]):
            forkservers.warm_up(stack)

    def is_warm_for(self, task_type: str) -> bool:
        return forkservers.is_warm(forkservers.stack_of_task(task_type))

    async def start(self, record: TaskRecord, *, cpu_share: int, gpus: Sequence[int] = ()) -> WorkerHandle:
        parent, child = self._ctx.Pipe(duplex=True)
        root, models = str(self.layout.root), str(self.models_dir)
        process = forkservers.WorkerProcess(
            forkservers.stack_of_task(record.task_type),
            target=worker_main,
            args=(
                child,
                record.model_dump_json(),
                root,
                models,
                os.getpid(),
                cpu_share,
                tuple(gpus),
                tuple(str(d) for d in self.script_dirs),
            ),
            name=f"mcp-trainer:{record.task_id}",
            daemon=False,
        )
        # The first start of a stack launches its forkserver, which imports the stack: keep it off the loop.
        # Shielded: a worker that started must never be lost to a cancellation before it has a handle.
        with anyio.CancelScope(shield=True):
            started_at = await off_loop(_start, process)
        child.close()
        assert process.pid is not None
        return WorkerHandle(record.task_id, process, parent, process.pid, started_at)

    async def messages(self, run: RunHandle) -> AsyncGenerator[WorkerMessage, None]:
        """Yield the worker's messages until it exits; then make sure its whole group is gone."""
        handle = _handle(run)
        try:
            while True:
                while _poll(handle.conn):
                    try:
                        msg = handle.conn.recv()
                    except (EOFError, OSError):
                        break
                    yield msg
                if not handle.process.is_alive():
                    break
                await _readable_any(handle.conn, handle.process.sentinel, timeout=1.0)
            while _poll(handle.conn):  # a message sent just before exit
                try:
                    msg = handle.conn.recv()
                except (EOFError, OSError):
                    break
                yield msg
        finally:
            await self._reap(handle)

    async def _reap(self, handle: WorkerHandle) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(handle.process.join, 5.0)

            # Helpers the worker started may outlive it; they share its group.
            def group_gone() -> bool:
                if not process_group_alive(handle.pid):  # a scan of /proc: run in a thread
                    return True
                kill_process_group(handle.pid, signal.SIGKILL)
                return False

            await poll_until(lambda: off_loop(group_gone), interval_s=0.01, timeout_s=5.0)
            handle.conn.close()

    async def stop(self, run: RunHandle) -> None:
        """Cooperative stop request, then SIGTERM to the group, then SIGKILL; returns once it is gone."""
        handle = _handle(run)
        handle.stop_requested = True
        with contextlib.suppress(OSError, ValueError):
            handle.conn.send(("stop", {}))
        if await self._exited_within(handle, self.stop_grace_s):
            return
        kill_process_group(handle.pid, signal.SIGTERM)
        if await self._exited_within(handle, self.term_grace_s):
            return
        kill_process_group(handle.pid, signal.SIGKILL)
        await self._exited_within(handle, 5.0)

    async def finish(self, run: RunHandle) -> None:
        with contextlib.suppress(OSError, ValueError):
            _handle(run).conn.send(("finish", {}))

    async def wait_gone(self, run: RunHandle, timeout_s: float) -> None:
        await anyio.to_thread.run_sync(_handle(run).process.join, timeout_s)

    async def run_job(self, target: str, kwargs: dict[str, Any], timeout_s: float) -> Any:
        """Run `module:function(**kwargs)` in a fresh worker process and return its result.

        Raises TrainerError with the job's message when it refuses its input, TimeoutError past `timeout_s`.
        The process group is ended whatever happens.
        """
        parent, child = self._ctx.Pipe(duplex=True)
        process = forkservers.WorkerProcess(
            forkservers.stack_of_job(target), target=job_main, args=(child, target, kwargs), daemon=False
        )
        await anyio.to_thread.run_sync(process.start)
        child.close()
        assert process.pid is not None
        try:
            with anyio.fail_after(timeout_s):
                await _readable_any(parent, timeout=timeout_s + 1)
                try:
                    kind, payload = parent.recv()
                except (EOFError, OSError):
                    raise TrainerError("The job's process died before it answered.") from None
        finally:
            kill_process_group(process.pid)
            await anyio.to_thread.run_sync(process.join, 5.0)
            parent.close()
        if kind == "error":
            raise TrainerError(payload["message"], payload.get("hint"))
        return payload

    async def _exited_within(self, handle: WorkerHandle, seconds: float) -> bool:
        # Polls rather than waiting on the sentinel: `messages` may be waiting on it already.
        return await poll_until(lambda: not handle.process.is_alive(), interval_s=0.005, timeout_s=seconds)


def _poll(conn: Connection) -> bool:
    try:
        return conn.poll()
    except (OSError, ValueError):
        return False


async def _readable_any(*objs: Any, timeout: float) -> None:
    """Return when any of the file-like objects is readable, or after `timeout`."""
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:

            async def wait_one(obj: Any) -> None:
                await anyio.wait_readable(obj)
                tg.cancel_scope.cancel()

            for obj in objs:
                tg.start_soon(wait_one, obj)


def _start(process: BaseProcess) -> float | None:
    """Start `process`; its start time as the kernel has it (to tell a reused pid apart), if it lives."""
    process.start()
    assert process.pid is not None
    try:
        return float(psutil.Process(process.pid).create_time())
    except psutil.NoSuchProcess:
        return None
