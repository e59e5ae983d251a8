"""Finding and ending every process a script started, even one that left the worker's process group.

Each process of a script task inherits a marker in its environment (`MCP_TRAINER_RUN=<random>`), which
`setsid()`, a double fork or a new process group do not shed: `marked_pids` finds them by reading
`/proc/<pid>/environ` (the environment a process started with). A process that threw its environment
away when it exec'd (`env -i`) is not found this way; the worker also ends its own descendants.

Run as a program (`python -I -S custodian.py MARKER`), this file is the custodian: a tiny process in a
session of its own that the worker starts beside the script. It waits until its standard input reaches
its end, which happens when the worker closes the pipe or dies in any way (SIGKILL included), then ends
every marked process that is left and exits. So no process of the script outlives its worker, however
the worker ends. Standard library only, importing nothing of this package: it must start in
milliseconds, with nothing but the interpreter.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MARKER_VAR", "end_marked", "marked_pids"]

MARKER_VAR = "MCP_TRAINER_RUN"
_ROUNDS = 200  # scans at most: a process may fork between a scan and the signal that ends it


def marked_pids(marker: str, exclude: Iterable[int] = ()) -> list[int]:
    """The live processes whose environment holds `MCP_TRAINER_RUN=<marker>`."""
    needle = f"{MARKER_VAR}={marker}".encode()
    skip = {os.getpid(), *exclude}
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def end_marked(marker: str, exclude: Iterable[int] = ()) -> int:
    """SIGKILL every marked process until a scan finds none; returns how many were signalled."""
    ended: set[int] = set()
    for _ in range(_ROUNDS):
        pids = marked_pids(marker, exclude)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                ended.add(pid)
            except OSError:
                pass
        time.sleep(0.005)
    return len(ended)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: custodian.py MARKER (reads stdin to its end, then ends the marked processes)")
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C meant for a terminal's foreground is not for it
    while os.read(0, 4096):
        pass
    ended = end_marked(argv[0])
    if ended:
        print(f"custodian: ended {ended} process(es) the script left behind", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
