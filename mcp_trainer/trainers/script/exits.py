"""How a script's unsuccessful exit reads in its task's error: the exit code or the signal by name, and the
last lines it wrote on stderr.

A nonzero exit is the script's own failure (`script_error`, not retried: the script or its arguments must
change first). A SIGKILL while the kernel's out-of-memory killer ended a process (its `oom_kill` count in
`/proc/vmstat` rose during the run) is `out_of_memory`, which says to claim or free more memory.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from mcp_trainer.records import ErrorKind
from mcp_trainer.trainers.base import TaskFailure

__all__ = ["exit_failure", "oom_kills"]

_TAIL_LINES = 10
_TAIL_CHARS = 1500


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has ended since boot (Linux 4.13+), if known."""
    try:
        with open("/proc/vmstat", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def exit_failure(code: int, stderr_tail: Sequence[str], oom_before: int | None) -> TaskFailure:
    """The failure of a script that ended with `code` (negative: killed by that signal)."""
    tail = _tail(stderr_tail)
    if code < 0:
        name = _signal_name(-code)
        after = oom_kills()
        if -code == signal.SIGKILL and oom_before is not None and after is not None and after > oom_before:
            return TaskFailure(
                ErrorKind.OUT_OF_MEMORY,
                "The script was killed by SIGKILL while the kernel's out-of-memory killer ended a "
                "process: it most likely ran out of memory." + tail,
                "Free memory on the machine or make the script use less, claim what it needs (memory_gb), "
                "then submit it again.",
            )
        what = f"The script was killed by {name}."
    else:
        what = f"The script exited with code {code}."
    return TaskFailure(
        ErrorKind.SCRIPT_ERROR,
        what + tail,
        "get_task_logs has its whole output. Fix the script or its arguments, then submit it again "
        "(or retry_task to run it as it is).",
    )


def _tail(lines: Sequence[str]) -> str:
    kept = [line for line in list(lines)[-_TAIL_LINES:] if line.strip()]
    if not kept:
        return " It wrote nothing on stderr."
    text = "\n".join(kept)
    if len(text) > _TAIL_CHARS:
        text = "…" + text[-_TAIL_CHARS:]
    return " The last lines of its stderr:\n" + text


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"
