"""Writing small scripts for script-task tests, and finding the processes they started."""

from __future__ import annotations

import textwrap
from pathlib import Path

import psutil

__all__ = ["alive", "read_pids", "write_script"]


def write_script(directory: Path, name: str, body: str, *, executable: bool = False) -> Path:
    """`directory/name` holding `body` (dedented), made executable when asked."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    if executable:
        path.chmod(0o755)
    return path


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` that are live processes (a zombie is not)."""
    live = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                live.append(pid)
        except psutil.NoSuchProcess:
            continue
    return live


def read_pids(path: Path) -> list[int]:
    """The pids a script wrote into `path`, one per line."""
    return [int(word) for word in path.read_text().split()] if path.exists() else []
