"""Progress, metrics and artifacts from your own script, when it runs as a task (`task_type: "script"`)::

    from mcp_trainer.report import artifact, metric, progress

    for epoch in range(10):
        ...
        progress(percent=10 * (epoch + 1), phase="training", step=epoch + 1, total=10)
        metric("val_loss", val_loss)
    artifact("checkpoints/last.pt")

Each call sends one JSON line to the worker that runs the task: through the pipe it passed in
`MCP_TRAINER_REPORT_FD` when that pipe is still this process's, else printed on stdout as
`@@mcp-trainer {...}` (a launcher that closed the pipe, a subprocess), which the worker reads too. A
script that prints that line format itself needs no import at all. Outside the queue (no
`MCP_TRAINER_TASK_ID` in the environment) every call does nothing, so the same script runs anywhere.

Standard library only, and nothing heavy: a script pays for none of the server's imports by using it
(importing `mcp_trainer` itself still loads the package's public API).
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["LINE_PREFIX", "REPORT_FD_VAR", "TASK_ID_VAR", "artifact", "metric", "progress"]

LINE_PREFIX = "@@mcp-trainer "  # a stdout line starting with this carries one JSON report
REPORT_FD_VAR = "MCP_TRAINER_REPORT_FD"  # "<fd>:<inode of the pipe>": used only if it is that very pipe
TASK_ID_VAR = "MCP_TRAINER_TASK_ID"  # set by the worker: the script runs in the queue
_MAX_TEXT = 300  # characters of a message or a phase kept (a report line stays well under PIPE_BUF)
_lock = threading.Lock()


def progress(
    percent: float | None = None,
    phase: str | None = None,
    message: str | None = None,
    step: int | None = None,
    total: int | None = None,
) -> None:
    """Where the script is: `percent` (0-100) of the whole run, a `phase` name (`loading`, `training`,
    ...), a free-text `message`, and `step` of `total` (the percent, when not given, is step / total).
    Only what is given changes; the task's status shows the latest. Raises TypeError or ValueError for a
    value that is not what it should be (a percent that is not a number, a negative step)."""
    report: dict[str, Any] = {"type": "progress"}
    if percent is not None:
        report["percent"] = min(max(_number(percent, "percent"), 0.0), 100.0)
    if phase is not None:
        report["phase"] = _text(phase, "phase")
    if message is not None:
        report["message"] = _text(message, "message")
    for name, value in (("step", step), ("total", total)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number, 0 or more (got {value!r})")
            report[name] = value
    _send(report)


def metric(name: str, value: float) -> None:
    """The latest value of a metric (`val_loss`, `accuracy`): shown in the task's status while it runs,
    and the completed task's `metrics` (and its model entry's) hold the last value of each."""
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ValueError(f"a metric's name must be text of 1 to 100 characters (got {name!r})")
    number = _number(value, name)
    _send({"type": "metric", "name": name, "value": number if math.isfinite(number) else str(number)})


def artifact(path: str | os.PathLike[str]) -> None:
    """A file or directory the script made that the caller should know of (a checkpoint, a plot): the
    completed task lists it (absolute, relative paths taken from the current directory)."""
    _send({"type": "artifact", "path": str(Path(path).absolute())})


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            return float(value)  # type: ignore[arg-type]  # numpy scalars, tensors with one element
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number (got {type(value).__name__})") from None
    return float(value)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be text (got {type(value).__name__})")
    return value[:_MAX_TEXT]


def _send(report: dict[str, Any]) -> None:
    if TASK_ID_VAR not in os.environ:
        return  # not run by the queue: nothing listens
    line = json.dumps(report, ensure_ascii=False, separators=(",", ":")) + "\n"
    fd = _pipe()
    with _lock:
        if fd is not None:
            try:
                os.write(fd, line.encode("utf-8"))
                return
            except OSError:
                pass  # the worker is gone (a broken pipe): try stdout, as a printed report
        try:
            sys.stdout.write(LINE_PREFIX + line)
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # stdout closed: a report is never worth failing the script for


def _pipe() -> int | None:
    """The report pipe's fd, if this process still holds the very pipe the worker passed (an fd number
    reused for another file after a launcher closed it must never be written to)."""
    given = os.environ.get(REPORT_FD_VAR, "")
    fd_text, _, inode_text = given.partition(":")
    if not (fd_text.isdigit() and inode_text.isdigit()):
        return None
    try:
        info = os.fstat(int(fd_text))
    except OSError:
        return None
    if not stat.S_ISFIFO(info.st_mode) or info.st_ino != int(inode_text):
        return None
    return int(fd_text)
