"""The worker process's side: isolate, log to the task's file, run the trainer, report, classify errors.

Runs in a process forked from the forkserver (see local.py). Talks to its owner over one pipe:
it sends ("started" | "progress" | "result" | "error" | "stopped", payload), and after a result the
trainer's work left for later (the report plots, `ctx.later`) then ("after_done", {}); it receives
("stop", {}) (give up) and ("finish", {}) (end the work now and keep the best so far).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.engine.failures import classify_exception
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.processes import WORKER_NAME
from mcp_trainer.errors import TrainerError
from mcp_trainer.files import NotARegularFile, open_no_follow, real_dir
from mcp_trainer.records import TaskRecord
from mcp_trainer.trainers.base import StopRequested, WorkerContext
from mcp_trainer.trainers.registry import load_trainer

__all__ = ["job_main", "worker_main"]

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
log = logging.getLogger("mcp_trainer.engine.worker")


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent (the forkserver) dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _name_worker() -> None:
    """Name the process (its comm), one of the marks that tell a worker apart (processes.py)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, WORKER_NAME, 0, 0, 0)


def _redirect_output(log_path: Path) -> None:
    """Point fds 1 and 2 at the task's log: on stdio transport the server's stdout is the protocol."""
    real_dir(log_path.parent)
    try:
        fd = open_no_follow(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    except (NotARegularFile, IsADirectoryError, OSError):
        # A link, FIFO or folder planted where the log goes: set it aside and start the log afresh.
        os.replace(log_path, log_path.with_name(f"{log_path.name}.not-a-log.{time.time_ns()}"))
        fd = open_no_follow(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)


def _alive(pid: int) -> bool:
    """A killed owner stays a zombie until its parent reaps it; a zombie cannot record anything."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _listen(
    conn: Connection, stop: threading.Event, finish: threading.Event, parent_pid: int, owner_pid: int
) -> None:
    """Background thread: take stop and finish requests; end the whole task if the owner is gone."""
    while True:
        try:
            if conn.poll(0.2):
                kind, _ = conn.recv()
                if kind == "stop":
                    stop.set()
                elif kind == "finish":
                    finish.set()
        except (EOFError, OSError):
            # The owner closes its end only after this process has exited, so a closed pipe means the
            # owner died: nobody can record this task, and a new owner will run it again.
            os.killpg(0, signal.SIGKILL)
        owner_gone = os.getppid() != parent_pid or not _alive(owner_pid)
        if owner_gone:
            # Nobody can record this task's outcome: stop at once rather than run twice beside a new owner.
            os.killpg(0, signal.SIGKILL)


def place(cpu_share: int, gpus: Sequence[int]) -> None:
    """Confine this process (and what it starts) to what the task was granted, before anything heavy is
    imported: the thread pools of OpenMP, BLAS and torch to `cpu_share` threads, CUDA to the GPUs `gpus`
    (none: no GPU at all)."""
    threads = str(cpu_share)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[name] = threads
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)


def worker_main(
    conn: Connection,
    record_json: str,
    queue_dir: str,
    models_dir: str,
    owner_pid: int,
    cpu_share: int,
    gpus: tuple[int, ...] = (),
    script_dirs: tuple[str, ...] = (),
) -> None:
    """Entry point of a worker process."""
    os.setpgid(0, 0)
    _die_with_parent()
    _name_worker()
    place(cpu_share, gpus)
    parent_pid = os.getppid()
    record = TaskRecord.model_validate_json(record_json)
    layout = QueueLayout.at(queue_dir)
    _redirect_output(layout.log_file(record.task_id))
    if record.overrides:  # a retry made this attempt smaller (engine/retries.py)
        log.info("this attempt runs with %s", record.overrides)
        record = record.model_copy(update={"spec": record.spec.model_copy(update=record.overrides)})
    stop, finish = threading.Event(), threading.Event()
    if record.finish_requested:  # asked for before this attempt started (or before a restart)
        finish.set()
    threading.Thread(target=_listen, args=(conn, stop, finish, parent_pid, owner_pid), daemon=True).start()
    log.info(
        "attempt %d of task %s (%s) in pid %d, with a share of %d CPU(s) and GPUs [%s]",
        record.attempts,
        record.task_id,
        record.task_type,
        os.getpid(),
        cpu_share,
        os.environ["CUDA_VISIBLE_DEVICES"],
    )
    conn.send(("started", {"pid": os.getpid(), "at": time.time()}))
    ctx = WorkerContext(
        record=record,
        models_dir=Path(models_dir),
        work_dir=layout.work_path(record.task_id),
        send=conn.send,
        stop_event=stop,
        signer=ModelSigner(layout.signing_key),
        finish_event=finish,
        cpu_share=cpu_share,
        gpus=tuple(gpus),
        script_dirs=tuple(Path(d) for d in script_dirs),
        output_dir=layout.dataset_path(record.task_id),
        queue_dir=layout.root,
    )
    if record.overrides:  # say it where the status shows it, not only in the log
        changed = ", ".join(f"{k}={v}" for k, v in record.overrides.items())
        ctx.warn(f"this attempt runs with {changed}: an earlier attempt ran out of memory")
    try:
        real_dir(ctx.work_dir)  # a link planted as work/<task_id> must not receive the task's state
        result = load_trainer(record.task_type).run(ctx)
    except StopRequested:
        log.info("stopped on request")
        conn.send(("stopped", {}))
    except BaseException as exc:
        log.error("task failed:\n%s", "".join(traceback.format_exception(exc)))
        disks = (ctx.work_dir.parent, ctx.models_dir)
        conn.send(("error", classify_exception(exc, disks).model_dump(mode="json")))
    else:
        log.info(
            "completed: %s", f"model {result.model_id}" if result.model_id else "no model (outputs only)"
        )
        conn.send(("result", result.model_dump(mode="json")))  # the owner records it completed at once
        _after_result(ctx)
        conn.send(("after_done", {}))
    finally:
        logging.shutdown()
        conn.close()


def _yield_the_cpus() -> str:
    """Run from now on only on CPU time nothing else wants: the SCHED_IDLE policy (Linux), else nice 19.
    Returns which, for the log."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)
        return "nice 19"


def _after_result(ctx: WorkerContext) -> None:
    """The work a trainer left for after its result (ctx.later: importances, the report plots); its
    failure is logged and costs only what it makes. It runs on idle CPU time only: the task's slot is
    free once its result is recorded, and the next task's training must not wait on these plots (at nice
    10, ten drawers at once took half a core from the training beside them)."""
    started = time.perf_counter()
    how = _yield_the_cpus()
    try:
        ctx.run_after_result()
    except BaseException:
        log.error("the work after the result failed:\n%s", traceback.format_exc())
    else:
        log.info("after the result (%s): done in %.3f s", how, time.perf_counter() - started)


def job_main(conn: Connection, target: str, kwargs: dict[str, Any]) -> None:
    """Entry point of a short job process (e.g. a prediction): call `module:function`, send its result."""
    os.setpgid(0, 0)
    _die_with_parent()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # never write on the server's stdout (the protocol on stdio)
    os.close(devnull)
    try:
        module_name, _, func_name = target.partition(":")
        func = getattr(importlib.import_module(module_name), func_name)
        result = func(**kwargs)
    except TrainerError as exc:
        conn.send(("error", {"message": exc.message, "hint": exc.hint}))
    except Exception as exc:
        conn.send(("error", {"message": f"{type(exc).__name__}: {exc}", "hint": None, "internal": True}))
    else:
        conn.send(("result", result))
    finally:
        conn.close()
