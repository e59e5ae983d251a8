"""The audit log: one JSON line per call that changes something, in `queue/audit.jsonl`.

Each line says when the call came (ISO 8601, UTC), who made it (`actor`: the MCP transport, the client's
address and name, the tool; or a Python program and its pid), the call, the task or model it named, the
`user_id` it gave, and how it ended: "ok", or the first line of the error. Never data values: an error's
quoted values (a cell shown as an example, say) are masked, rows and file contents are never written;
paths and ids are.

The file is only ever appended to: opened with O_APPEND and without following a link (files.py
`open_no_follow`), and each line written with one `os.write`, so that the lines of several processes
sharing the queue never interleave. A line that cannot be written is logged and never fails the call.

The actor is set by whoever calls the Python API on someone's behalf (the MCP server, for each tool
call: `acting_as`); a plain call from Python is recorded as "python" with its pid.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio

from mcp_trainer.errors import TrainerError
from mcp_trainer.files import open_no_follow
from mcp_trainer.offload import off_loop

__all__ = ["AuditLog", "AuditRecord", "acting_as", "audited", "current_actor", "outcome_of"]

log = logging.getLogger(__name__)
Entry = dict[str, object]
AuditRecord = contextlib.AbstractAsyncContextManager[Entry]  # what `AuditLog.record` returns
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_ACTOR: ContextVar[Mapping[str, object] | None] = ContextVar("mcp_trainer_actor", default=None)
_MAX_TEXT = 1024  # characters of any one value written (a path, an id, a client name, an error)
# A quoted value in an error, as `repr` writes it: may be a cell of the data, never written.
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
INTERRUPTED = "interrupted: the caller went away before the call answered"


@contextlib.contextmanager
def acting_as(actor: Mapping[str, object]) -> Iterator[None]:
    """Record the calls made inside this block (in this task and the tasks it awaits) as `actor`'s."""
    token = _ACTOR.set(dict(actor))
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> Entry:
    """Who is calling: what `acting_as` set, else this Python program."""
    actor = _ACTOR.get()
    if actor is None:
        return {"via": "python", "pid": os.getpid()}
    return {k: _clip(v) for k, v in actor.items()}


def outcome_of(exc: BaseException) -> str:
    """The first line of an error's message, quoted values masked ('…')."""
    text = exc.message if isinstance(exc, TrainerError) else f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines()
    return str(_clip(_QUOTED.sub("'…'", lines[0] if lines else type(exc).__name__)))


def _clip(value: object) -> object:
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return value[: _MAX_TEXT - 1] + "…"
    return value


class AuditLog:
    """The append-only log of changing calls at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: Mapping[str, object]) -> None:
        """Write `entry` as one line (blocking). Never raises: a failure is logged."""
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode("ascii")
        try:
            fd = open_no_follow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                written = os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("audit log %s not written (%s): %s", self.path, exc.strerror or exc, line.decode())
            return
        if written != len(line):  # a full disk cut the line short
            log.warning("audit log %s: only %d of %d bytes written: %s", self.path, written, len(line), line)

    @contextlib.asynccontextmanager
    async def record(self, call: str, **fields: object) -> AsyncIterator[Entry]:
        """Around one changing call: yields its entry (add what the call learns, such as the id it made)
        and appends it when the call ends, with its outcome. The error, if any, goes on unchanged."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry: Entry = {"time": now, "actor": current_actor(), "call": call}
        entry.update((k, _clip(v)) for k, v in fields.items())
        try:
            yield entry
        except Exception as exc:
            entry["outcome"] = outcome_of(exc)
            await off_loop(self.append, entry)
            raise
        except BaseException:  # cancelled: whether the change happened, the task's own status says
            entry["outcome"] = INTERRUPTED
            with anyio.CancelScope(shield=True):
                await off_loop(self.append, entry)
            raise
        entry["outcome"] = "ok"
        await off_loop(self.append, entry)


def audited(call: str, key: str) -> Callable[[F], F]:
    """Record each call of a changing method of the API whose first argument names its target (`key`:
    "task_id", "model_id") in the service's audit log (`self._audit`)."""

    def decorate(method: F) -> F:
        default = inspect.signature(method).parameters[key].default
        unset = None if default is inspect.Parameter.empty else default

        @functools.wraps(method)
        async def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
            target = args[0] if args else kwargs.get(key, unset)
            async with self._audit.record(call, **{key: target}):
                return await method(self, *args, **kwargs)

        return cast(F, recorded)

    return decorate
