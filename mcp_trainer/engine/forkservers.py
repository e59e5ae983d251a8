"""The forkservers that workers are forked from: one per training stack, each importing its stack once.

A forkserver is a clean single-threaded process that imports the heavy modules once (its preload) and
forks each worker from there in milliseconds (local.py says why neither `fork` from the server nor
`spawn` will do). There are two, because their stacks differ in weight and in who needs them:

- "sklearn" (scikit-learn, pandas, Optuna, matplotlib: ~2 s to import here), for the tabular tasks and
  their prediction jobs. Started when the owner starts (`warm_up`), since nearly every queue runs some.
- "torch" (torch, transformers, peft and the fine-tune trainer: ~5 s here, 6-9 s on a GPU machine), for
  fine-tunes and their prediction and generation jobs. Started only when the first fine-tune starts, or
  earlier when one waits in the queue (the scheduler asks for it), so that a queue of tabular tasks never
  pays its ~0.5 GB.

The server process imports neither stack: it only launches these (invariant: the server stays light).
Thread pools and CUDA stay untouched in a forkserver (preload modules say how), so that each worker sets
its own thread counts and sees only its GPUs.
"""

from __future__ import annotations

import io
import os
import threading
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from typing import Any

from mcp_trainer.specs.finetune import FINETUNE_TASK_TYPES

__all__ = ["PRELOADS", "Stack", "WorkerProcess", "is_warm", "stack_of_job", "stack_of_task", "warm_up"]

Stack = str  # "sklearn" or "torch"
PRELOADS: dict[Stack, list[str]] = {
    "sklearn": ["mcp_trainer.engine.worker", "mcp_trainer.trainers.preload"],
    "torch": ["mcp_trainer.engine.worker", "mcp_trainer.trainers.finetune.preload"],
}
_FINETUNE_MODULES = "mcp_trainer.trainers.finetune."


def _new_server(stack: Stack) -> forkserver.ForkServer:
    server = forkserver.ForkServer()
    server.set_forkserver_preload(PRELOADS[stack])
    return server


# One of each per process: a forkserver outlives the executors that use it and ends with this process.
_SERVERS: dict[Stack, forkserver.ForkServer] = {stack: _new_server(stack) for stack in PRELOADS}
_warm: set[Stack] = set()
_warm_lock = threading.Lock()


def stack_of_task(task_type: str) -> Stack:
    return "torch" if task_type in FINETUNE_TASK_TYPES else "sklearn"


def stack_of_job(target: str) -> Stack:
    """The stack of a short job, from its `module:function` target."""
    return "torch" if target.startswith(_FINETUNE_MODULES) else "sklearn"


def is_warm(stack: Stack) -> bool:
    """Whether the forkserver of `stack` has forked a process already (its imports are done)."""
    return stack in _warm


def warm_up(stack: Stack) -> None:
    """Start the forkserver of `stack` and wait until its imports are done (blocking; cheap once warm)."""
    if stack in _warm:
        return
    p = WorkerProcess(stack, target=_noop, daemon=False)
    p.start()
    p.join()


def _noop() -> None:
    return None


class _Popen(popen_forkserver.Popen):
    """Launch through the forkserver of one stack, without re-importing the parent's `__main__`.

    multiprocessing re-runs the parent's main script in each child so that functions defined there can be
    unpickled. Workers run functions of this package, so that is never needed, and a caller's script
    without an `if __name__ == "__main__":` guard would otherwise start a second service inside every
    worker. The body is `popen_forkserver.Popen._launch` of Python 3.11 with those two changes."""

    def __init__(self, process_obj: WorkerProcess) -> None:
        self._stack = process_obj.stack
        super().__init__(process_obj)

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        fds: list[int] = self._fds  # type: ignore[attr-defined]  # set by Popen.__init__
        self.sentinel, w = _SERVERS[self._stack].connect_to_new_process(fds)
        # A duplicate of the data pipe's write end stays open as the child's sentinel of its parent.
        parent_w = os.dup(w)
        close_fds = util.close_fds  # type: ignore[attr-defined]  # untyped in typeshed
        self.finalizer = util.Finalize(self, close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)
        with _warm_lock:
            _warm.add(self._stack)


class WorkerProcess(ForkServerProcess):
    """A process forked from the forkserver of `stack`."""

    def __init__(self, stack: Stack, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stack = stack

    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)
