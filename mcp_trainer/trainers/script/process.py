"""The script's process, from its start to the last of its descendants gone.

The script is a child of the worker, in the worker's process group, so that the executor's SIGTERM and
SIGKILL to the group reach it. Its stdout and stderr come through pipes, line by line, into the task's
log (the worker's fds 1 and 2) and to the trainer as events; its reports through a pipe of their own whose
write end it inherits. A script's process can leave the group (`setsid()`, a daemon's double fork), so
the worker ends the whole tree itself: its descendants (the worker is a child subreaper, so orphans of
the script become its children rather than init's) and every process carrying the run's marker
(custodian.py). And if the worker dies before it can (SIGKILL to its group), the custodian, in a session
of its own, ends the marked processes once the worker's end of its pipe closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import IO

import psutil

from mcp_trainer.report import REPORT_FD_VAR
from mcp_trainer.trainers.script import custodian

__all__ = ["Event", "ScriptProcess", "new_marker", "subreaper"]

log = logging.getLogger(__name__)
Event = tuple[str, str]  # ("out" | "err" | "report", a line without its end)
_MAX_LINE = 16_384  # bytes of one line kept together; a longer one arrives in pieces
_PR_SET_CHILD_SUBREAPER = 36
_TAIL_LINES = 20  # of stderr, kept for the error of a failed script


def new_marker() -> str:
    """A fresh marker for one run of a script (custodian.py)."""
    return secrets.token_hex(12)


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """While inside, orphaned descendants of this process become its children (Linux; else nothing)."""
    libc = None
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if libc is not None:
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


class ScriptProcess:
    """A started script: its events, its exit, and the end of everything it started."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], marker: str) -> None:
        self.marker = marker
        self.events: queue.Queue[Event] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=_TAIL_LINES)
        watch_r, self._watch_w = os.pipe()  # the custodian's stdin: its end is the worker's end
        try:
            self.custodian = subprocess.Popen(
                [sys.executable, "-I", "-S", custodian.__file__, marker],
                stdin=watch_r,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(watch_r)
        self._children_before = {p.pid for p in psutil.Process().children()}
        report_r, report_w = os.pipe()
        env = {**env, REPORT_FD_VAR: f"{report_w}:{os.fstat(report_w).st_ino}"}
        try:
            self.child = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(report_w,),
            )
        except BaseException:
            os.close(report_r)
            self.close()
            raise
        finally:
            os.close(report_w)
        assert self.child.stdout is not None and self.child.stderr is not None
        self._readers = [
            _reader(self.child.stdout, "out", self.events, 1),
            _reader(self.child.stderr, "err", self.events, 2),
            _reader(os.fdopen(report_r, "rb"), "report", self.events, None),
        ]

    def next_event(self, timeout_s: float) -> Event | None:
        """The next line from the script, or None when none came within `timeout_s`."""
        try:
            event = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if event[0] == "err":
            self.stderr_tail.append(event[1].rsplit("\r", 1)[-1])
        return event

    def pending(self) -> Iterator[Event]:
        """The lines already read, once every reader has ended (or after a few seconds)."""
        deadline = time.monotonic() + 5.0
        for thread in self._readers:
            thread.join(max(0.0, deadline - time.monotonic()))
        while (event := self.next_event(0)) is not None:
            yield event

    def interrupt(self) -> None:
        """SIGINT to the script itself (a Python script gets KeyboardInterrupt): finish now."""
        with contextlib.suppress(ProcessLookupError):
            self.child.send_signal(signal.SIGINT)

    def end_tree(self, grace_s: float) -> int:
        """SIGTERM to every process of the script, SIGKILL to those left after `grace_s`, until none is
        left; returns how many there were."""
        procs = self._tree()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _wait_gone(procs, grace_s)
        seen = {p.pid for p in procs}
        for _ in range(100):  # one may have forked meanwhile
            left = self._tree()
            if not left:
                break
            seen |= {p.pid for p in left}
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            _wait_gone(left, 2.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.wait(timeout=1.0)  # collect its exit (it is gone by now)
        self._reap()
        return len(seen)

    def close(self) -> None:
        """Let the custodian go: it ends what may be left of the marked processes, and exits."""
        with contextlib.suppress(OSError):
            os.close(self._watch_w)
        try:
            self.custodian.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            log.warning("the custodian (pid %d) is still ending the script's processes", self.custodian.pid)

    def _tree(self) -> list[psutil.Process]:
        """The live processes of the script: the script, the orphans of its tree that became this
        process's children since it started, the marked processes, and all their descendants."""
        roots: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            if self.child.returncode is None:  # once collected, its pid may be another process's
                roots[self.child.pid] = psutil.Process(self.child.pid)
            for proc in psutil.Process().children():
                if proc.pid not in self._children_before and proc.pid != self.custodian.pid:
                    roots.setdefault(proc.pid, proc)
        for pid in custodian.marked_pids(self.marker, exclude=(self.custodian.pid,)):
            with contextlib.suppress(psutil.Error):
                roots.setdefault(pid, psutil.Process(pid))
        procs = dict(roots)
        for root in roots.values():
            with contextlib.suppress(psutil.Error):
                procs.update((p.pid, p) for p in root.children(recursive=True))
        return [p for p in procs.values() if _alive(p)]

    def _reap(self) -> None:
        """Collect the exit of the script's orphans that became this process's children (not the script's
        own exit, which `Popen` collects with its code, nor that of children this process had before)."""
        known = {*self._children_before, self.child.pid, self.custodian.pid}
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process().children():
                if proc.pid not in known:
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(proc.pid, os.WNOHANG)


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.005)


def _reader(stream: IO[bytes], kind: str, events: queue.Queue[Event], log_fd: int | None) -> threading.Thread:
    """A thread that passes each line of `stream` on as an event, and copies it to the log at `log_fd`."""

    def read() -> None:  # the log gets each line whole: one write, the worker's fds being O_APPEND
        with stream:
            for raw in iter(lambda: stream.readline(_MAX_LINE), b""):
                if log_fd is not None:
                    with contextlib.suppress(OSError):
                        os.write(log_fd, raw if raw.endswith(b"\n") else raw + b"\n")
                events.put((kind, raw.decode("utf-8", errors="replace").rstrip("\r\n")))

    thread = threading.Thread(target=read, name=f"script-{kind}", daemon=True)
    thread.start()
    return thread
