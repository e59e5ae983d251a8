"""Runs a script task: check it may run here, start it, relay its output and reports, stop it for real,
and turn its exit into the task's result (with its output directory as a model entry) or error."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from mcp_trainer.artifacts.model_dir import SCRIPT_OUTPUT_DIR
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.machine import available_cpus
from mcp_trainer.preflight.script import check_script
from mcp_trainer.records import ErrorKind, TaskResult
from mcp_trainer.specs.script import ScriptSpec
from mcp_trainer.trainers.base import StopRequested, TaskFailure, Trainer, WorkerContext
from mcp_trainer.trainers.script.channel import Reports
from mcp_trainer.trainers.script.env import child_env
from mcp_trainer.trainers.script.exits import exit_failure, oom_kills
from mcp_trainer.trainers.script.output import RunFacts, save_output
from mcp_trainer.trainers.script.process import Event, ScriptProcess, new_marker, subreaper

__all__ = ["TERM_GRACE_S", "ScriptTrainer"]

# Between SIGTERM and SIGKILL to the script's processes. Short: the executor's own grace before it
# signals the worker's group is 0.3 s, and a stop must not wait on a script that ignores SIGTERM.
TERM_GRACE_S = 0.2
_POLL_S = 0.05
_EVENTS_PER_POLL = 1000  # a script that floods its output still has its stop checked


class ScriptTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        assert isinstance(ctx.record.spec, ScriptSpec)
        spec = _allowed_here(ctx.record.spec, ctx)
        argv = (
            [sys.executable, spec.script, *spec.args] if spec.script else [*(spec.command or []), *spec.args]
        )
        marker = new_marker()
        env = child_env(
            os.environ,
            spec.env,
            cpu_share=ctx.cpu_share or available_cpus(),
            gpus=ctx.gpus,
            task_id=ctx.record.task_id,
            attempt=ctx.record.attempts,
            work_dir=ctx.work_dir,
            marker=marker,
        )
        reports = Reports(ctx)
        oom_before = oom_kills()
        started = time.monotonic()
        assert spec.working_dir is not None
        with subreaper(), _signals_for_the_run(ctx):
            proc = _start(argv, spec.working_dir, env, marker)
            ctx.report(phase="running", message=" ".join(argv)[:300], force=True)
            code = _run(ctx, proc, reports, spec.timeout_s)
        ctx.check_stop()
        if code != 0:
            if ctx.should_finish():  # it did not finish cleanly when asked to: nothing to keep
                raise StopRequested
            raise exit_failure(code, proc.stderr_tail, oom_before)
        facts = RunFacts(argv, 0, time.monotonic() - started, dict(reports.metrics), list(reports.artifacts))
        return _result(ctx, spec, facts)


def _allowed_here(spec: ScriptSpec, ctx: WorkerContext) -> ScriptSpec:
    """The spec checked again in the worker, against the directories the server running the queue allows
    (a server started without the opt-in runs no script, whoever queued it; a link may have changed)."""
    try:
        return check_script(spec, ctx.script_dirs)
    except InvalidInputError as exc:
        where = f"the server that runs the queue (pid {os.getppid()})"
        raise TaskFailure(ErrorKind.SCRIPT_ERROR, f"Not run by {where}: {exc.message}", exc.hint) from None


def _start(argv: list[str], cwd: str, env: dict[str, str], marker: str) -> ScriptProcess:
    try:
        return ScriptProcess(argv, cwd, env, marker)
    except OSError as exc:  # not executable, a #! line naming no interpreter, ...
        raise TaskFailure(
            ErrorKind.SCRIPT_ERROR,
            f"The script could not be started ({argv[0]}): {exc.strerror or exc}.",
            "Check that the program runs from a shell as the server's user (its #! line, its permissions).",
        ) from None


def _run(ctx: WorkerContext, proc: ScriptProcess, reports: Reports, timeout_s: float | None) -> int:
    """Supervise the script to its exit code; whatever happens, none of its processes is left after."""
    try:
        code = _supervise(ctx, proc, reports, timeout_s)
    finally:
        left = proc.end_tree(TERM_GRACE_S)
        for event in proc.pending():
            _dispatch(event, reports)
        proc.close()
    if left:
        ctx.warn(f"the script left {left} process(es) running when it exited; they were ended")
    return code


def _supervise(ctx: WorkerContext, proc: ScriptProcess, reports: Reports, timeout_s: float | None) -> int:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    interrupted = False
    while True:
        event = proc.next_event(_POLL_S)
        for _ in range(_EVENTS_PER_POLL):
            if event is None:
                break
            _dispatch(event, reports)
            event = proc.next_event(0)
        reports.flush()
        code = proc.child.poll()
        if code is not None:
            return code
        ctx.check_stop()
        if ctx.should_finish() and not interrupted:
            interrupted = True
            proc.interrupt()
            ctx.warn("stop_training_task: the script was sent SIGINT to finish now")
        if deadline is not None and time.monotonic() > deadline:
            raise TaskFailure(
                ErrorKind.TIMEOUT,
                f"The script ran past timeout_s={timeout_s:g} s and was ended.",
                "Raise timeout_s, or make the script faster (it may keep checkpoints in "
                "$MCP_TRAINER_WORK_DIR, which a retry_task of the same task finds again).",
            )


def _dispatch(event: Event, reports: Reports) -> None:
    kind, text = event
    if kind == "out":
        reports.output_line(text)
    elif kind == "report":
        reports.report_line(text)


@contextlib.contextmanager
def _signals_for_the_run(ctx: WorkerContext) -> Iterator[None]:
    """While the script runs: a SIGTERM to the worker (the executor's, once its cooperative grace is over)
    asks for the stop instead of ending the worker at once, so the worker still ends the script's
    processes that left its group; and SIGINT is not ignored, since an ignored SIGINT would stay ignored
    in the script (which stop_training_task interrupts with it)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (a worker runs its trainer there)
        return
    term = signal.signal(signal.SIGTERM, lambda *_: ctx.stop_event.set())
    interrupt = signal.getsignal(signal.SIGINT)
    if interrupt == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, term)
        if interrupt == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _result(ctx: WorkerContext, spec: ScriptSpec, facts: RunFacts) -> TaskResult:
    outputs: dict[str, object] = {"exit_code": facts.exit_code, "artifacts": facts.artifacts}
    if spec.output_dir is None:
        ctx.report(phase="done", percent=100.0, eta_s=0.0, force=True)
        return TaskResult(metrics=facts.metrics, outputs=outputs)
    ctx.report(phase="saving", percent=99.0, eta_s=None, force=True)
    path = save_output(ctx, spec, facts)
    ctx.report(phase="done", percent=100.0, eta_s=0.0, force=True)
    outputs |= {"output_dir": spec.output_dir, "saved_output_dir": str(path / SCRIPT_OUTPUT_DIR)}
    return TaskResult(model_id=ctx.model_id, model_dir=str(path), metrics=facts.metrics, outputs=outputs)
