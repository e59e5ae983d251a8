"""What the fault suite shares: server processes driven over stdio, a watch on worker processes, and the
audit of a queue after the faults (see conftest.py for what each figure means).

Everything here is synchronous: the async tests call it through `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mcp_trainer import TaskRecord, TaskStatus
from mcp_trainer.engine.flocks import holders
from mcp_trainer.ids import is_task_id, model_id_for

SEED = 20261202  # every random choice of the suite comes from random.Random(SEED + scenario number)
QUEUE_OWN_FILES = {
    ".records.lock",
    ".owner.lock",
    ".model-signing-key",
    ".http-token",
    "audit.jsonl",  # the audit log of changing calls
    "archive",  # records of tasks that ended long ago (maintenance)
    "corrupt",
    "logs",
    "work",
    "datasets",  # what tasks write for later tasks (engine/layout.py)
    "pipelines",  # pipeline records (engine/pipeline_store.py)
}
_ATTEMPT_LINE = re.compile(r"attempt \d+ of task (task_\S+) ")
_RESULT_LINE = "completed: model "
# As tests/conftest.py's: the machine is shared, so other work's CPU or a crowded disk must not hold
# the suite's tasks back. Every server the suite starts gets these.
UNGATED = ("--cpu-threshold", "100", "--memory-threshold", "100", "--disk-threshold", "100")


def tiny(csv: Path, **extra: Any) -> dict[str, Any]:
    """A task that runs in well under a second once a worker starts: no search."""
    base = {"task_type": "svm_classification", "data_source": str(csv), "target_column": "label"}
    return base | {"optimize_hyperparameters": False, "cv_folds": 2} | extra


def search(csv: Path, trials: int, **extra: Any) -> dict[str, Any]:
    """A short Optuna search (its study journal lives in queue/work/<task_id>/)."""
    base = {"task_type": "svm_classification", "data_source": str(csv), "target_column": "label"}
    return base | {"n_trials": trials, "cv_folds": 2} | extra


def until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `check` until it holds; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)


# -- a server process on stdio -----------------------------------------------------------------------


class ServerGone(Exception):
    """The server's stdout closed before it answered."""


class StdioServer:
    """A real `python -m mcp_trainer` on stdio (admission thresholds off: UNGATED), spoken to in raw
    JSON-RPC so that it can be SIGKILLed or SIGSTOPped at any moment (its pid is ours). Its stderr goes
    to `<log_dir>/server-<n>.log`."""

    count = 0

    def __init__(self, queue_dir: Path, models_dir: Path, log_dir: Path, *options: str) -> None:
        StdioServer.count += 1
        self.stderr_path = log_dir / f"server-{StdioServer.count}.log"
        self.argv = [
            *("-m", "mcp_trainer", "--queue-dir", str(queue_dir), "--models-dir", str(models_dir)),
            *UNGATED,
            *options,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._next_id = 0
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, launcher: list[str] | None = None, pass_fds: tuple[int, ...] = ()) -> StdioServer:
        """Start the process (its own session, so that nothing of ours receives its signals); `launcher`
        replaces `python -m mcp_trainer` (same arguments)."""
        self.started_at = time.time()
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, *(launcher or self.argv[:2]), *self.argv[2:]],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        return self

    def initialize(self, timeout: float = 60.0) -> StdioServer:
        hello = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "f", "version": "0"},
        }
        self._request("initialize", hello, timeout)
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    def call(self, tool: str, arguments: dict[str, Any], timeout: float = 60.0) -> tuple[bool, Any]:
        """(True, structured result) or (False, the error's text). Raises ServerGone or TimeoutError."""
        result = self._request("tools/call", {"name": tool, "arguments": arguments}, timeout)
        if result.get("isError"):
            return False, " ".join(c.get("text", "") for c in result.get("content", []))
        return True, result.get("structuredContent")

    def call_without_waiting(self, tool: str, arguments: dict[str, Any]) -> None:
        """Send a call and do not read its answer (a call in flight when the server dies)."""
        self._next_id += 1
        params = {"name": tool, "arguments": arguments}
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": "tools/call", "params": params})

    def call_many(
        self, tool: str, calls: list[dict[str, Any]], timeout: float = 120.0
    ) -> list[tuple[bool, Any]]:
        """Send every call at once (pipelined, none waits for the one before), then read the answers;
        they come back in the order of `calls`, each as `call` returns it."""
        first = self._next_id + 1
        for arguments in calls:
            self.call_without_waiting(tool, arguments)
        results: dict[int, tuple[bool, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(results) < len(calls):
            message = self._read_message(deadline)
            if "method" in message or not first <= message.get("id", 0) < first + len(calls):
                continue
            if "error" in message:
                results[message["id"]] = (False, str(message["error"]))
            elif message["result"].get("isError"):
                content = message["result"].get("content", [])
                results[message["id"]] = (False, " ".join(c.get("text", "") for c in content))
            else:
                results[message["id"]] = (True, message["result"].get("structuredContent"))
        return [results[first + i] for i in range(len(calls))]

    def _request(self, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._next_id += 1
        wanted = self._next_id
        self._send({"jsonrpc": "2.0", "id": wanted, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == wanted and "method" not in message:
                if "error" in message:
                    return {"isError": True, "content": [{"text": str(message["error"])}]}
                result: dict[str, Any] = message["result"]
                return result

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise ServerGone(f"pid {self.pid} is gone") from None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"pid {self.pid} did not answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise ServerGone(f"pid {self.pid} closed its output")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    def descendants(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.pid).children(recursive=True)
        return []

    def kill(self, grace: float = 15.0) -> list[int]:
        """SIGKILL the server; returns the pids of what it had started (forkserver, workers, trial
        processes) still alive `grace` seconds later (they are then killed, and counted as orphans)."""
        left_behind = self.descendants()
        self.signal(signal.SIGKILL)
        self.wait_exit()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in left_behind):
            time.sleep(0.05)
        survivors = [p for p in left_behind if _alive(p)]
        for p in survivors:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        return [p.pid for p in survivors]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return code

    def close(self) -> None:
        """SIGTERM (a clean shutdown hands running tasks back), SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.wait_exit()
            return
        self.signal(signal.SIGTERM)
        try:
            self.wait_exit(20)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.wait_exit()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def servers(*made: StdioServer) -> Iterator[list[StdioServer]]:
    """Close every server on the way out, whatever happened: the last started first, so that a server
    started to share the queue is gone before the owner (started first) hands it over, and takes nothing
    over on the way out (the samplers still watch then)."""
    kept = list(made)
    try:
        yield kept
    finally:
        for s in reversed(kept):
            with contextlib.suppress(Exception):
                s.signal(signal.SIGCONT)
                s.close()


# -- the kernel's view of the owner lock -------------------------------------------------------------


flock_holders = holders  # the product's reading of /proc/locks (mcp_trainer/engine/flocks.py)


def owner_lock_holders(queue_dir: Path) -> set[int]:
    """The pids holding queue/.owner.lock: the processes that own the queue (one at most, ever)."""
    return flock_holders(queue_dir / ".owner.lock")


@dataclass
class OwnerSampler:
    """Samples every 20 ms in a thread who holds the queue's owner lock: every holder seen, and the most
    holders seen at one moment."""

    queue_dir: Path
    holders: set[int] = field(default_factory=set)
    most_at_once: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> OwnerSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = owner_lock_holders(self.queue_dir)
            self.holders |= now
            self.most_at_once = max(self.most_at_once, len(now))
            self.samples += 1


# -- worker processes ----------------------------------------------------------------------------------


@dataclass
class WorkerWatch:
    """Samples the worker processes of one queue every 50 ms in a thread: a worker (or trial process) is
    a process named `mcpt-worker` whose stdout is `queue/logs/<task_id>.log`; an attempt is its process
    group. Notes every one seen, every moment two attempts of one task were alive at once, and the
    sessions of the workers: a server of the suite leads its own session, so a worker's session is the
    server that started it (the test's own for a service in the test process)."""

    queue_dir: Path
    seen: dict[tuple[int, float], str] = field(default_factory=dict)  # (pid, start time) -> task id
    at_once: dict[str, set[int]] = field(default_factory=dict)  # task id -> the groups seen together
    sessions: set[int] = field(default_factory=set)  # the sessions (servers) whose workers were seen
    most_sessions_at_once: int = 0  # the most servers seen with workers alive at one moment
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> WorkerWatch:
        self._logs = str(self.queue_dir.resolve() / "logs") + "/"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def sample(self) -> None:
        groups: dict[str, set[int]] = {}
        sessions: set[int] = set()
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] != "mcpt-worker":
                continue
            try:
                out = str(Path(f"/proc/{proc.pid}/fd/1").readlink())
                if not out.startswith(self._logs) or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                task_id = Path(out).stem
                self.seen[(proc.pid, proc.create_time())] = task_id
                groups.setdefault(task_id, set()).add(os.getpgid(proc.pid))
                sessions.add(os.getsid(proc.pid))
            except (OSError, psutil.Error):
                continue
        self.sessions |= sessions
        self.most_sessions_at_once = max(self.most_sessions_at_once, len(sessions))
        for task_id, pgids in groups.items():
            if len(pgids) > 1:
                self.at_once.setdefault(task_id, set()).update(pgids)

    def orphans(self, grace: float = 15.0) -> list[str]:
        """Workers seen that are still alive `grace` seconds after the call (every task has ended by
        then); each is killed, and described."""
        self.sample()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._living():
            time.sleep(0.05)
        found = []
        for pid, task_id in self._living():
            found.append(f"pid {pid} of {task_id}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return found

    def alive_tasks(self) -> list[str]:
        """The tasks with a worker (or trial process) alive now."""
        self.sample()
        return sorted({task_id for _, task_id in self._living()})

    def _living(self) -> list[tuple[int, str]]:
        living = []
        for (pid, started), task_id in self.seen.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(pid)
                if abs(p.create_time() - started) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                    living.append((pid, task_id))
        return living


# -- the audit -----------------------------------------------------------------------------------------


def read_records(queue_dir: Path) -> dict[str, TaskRecord]:
    """Every task file of the queue that parses (the others are left to `corrupt_left`)."""
    records = {}
    for path in queue_dir.glob("task_*.json"):
        with contextlib.suppress(OSError, ValueError):
            if not path.is_symlink():
                record = TaskRecord.model_validate_json(path.read_bytes())
                records[record.task_id] = record
    return records


def all_ended(queue_dir: Path) -> bool:
    return all(r.status.is_terminal() for r in read_records(queue_dir).values())


def corrupt_left(queue_dir: Path, models_dir: Path | None = None) -> list[str]:
    """Entries of the queue directory (outside corrupt/) that are neither the queue's own files nor a
    plain task file that parses as the record its name says (a torn or invalid record, a link, a
    temporary file a dead writer left); and model folders published without a readable metadata.json
    (those being assembled or deleted, named `.tmp-`/`.deleting-`, are the sweep's: not counted)."""
    bad = []
    if models_dir is not None and models_dir.is_dir():
        for entry in models_dir.iterdir():
            if entry.name.startswith("."):
                continue
            try:
                json.loads((entry / "metadata.json").read_text())
            except (OSError, ValueError):
                bad.append(f"{models_dir.name}/{entry.name}")
    for entry in queue_dir.iterdir():
        if entry.name in QUEUE_OWN_FILES:
            continue
        stem = entry.name.removesuffix(".json")
        try:
            if entry.is_symlink() or not entry.name.endswith(".json") or not is_task_id(stem):
                raise ValueError(entry.name)
            if TaskRecord.model_validate_json(entry.read_bytes()).task_id != stem:
                raise ValueError(entry.name)
        except (OSError, ValueError):
            bad.append(entry.name)
    return bad


def model_dirs_of(models_dir: Path, task_id: str) -> list[str]:
    """Complete model folders holding this task's model: its own `model_<suffix>`, and any other whose
    metadata names the task."""
    found = []
    if not models_dir.is_dir():
        return found
    own = model_id_for(task_id)
    for entry in models_dir.iterdir():
        if entry.name.startswith("."):
            continue  # being assembled or deleted (swept once its writer is dead)
        meta = entry / "metadata.json"
        with contextlib.suppress(OSError, ValueError):
            if entry.name == own or json.loads(meta.read_text()).get("task_id") == task_id:
                found.append(entry.name)
    return found


def log_lines(queue_dir: Path, task_id: str) -> list[str]:
    try:
        return (queue_dir / "logs" / f"{task_id}.log").read_text(errors="replace").splitlines()
    except OSError:
        return []


@dataclass
class Audit:
    """The verdict on a queue after faults: every list names tasks (or files) and why."""

    tasks: int
    lost: list[str]
    run_twice: list[str]
    wrong_endings: list[str]
    corrupt_left: list[str]


def audit(queue_dir: Path, models_dir: Path, acknowledged: set[str], watch: WorkerWatch | None) -> Audit:
    records = read_records(queue_dir)
    set_aside = {p.name for p in (queue_dir / "corrupt").glob("task_*.json")}
    lost = [
        f"{t}: no task file" + (" (set aside in corrupt/)" if f"{t}.json" in set_aside else "")
        for t in sorted(acknowledged - set(records))
    ]
    lost += [f"{t}: still {r.status.value}" for t, r in sorted(records.items()) if not r.status.is_terminal()]
    run_twice: list[str] = []
    wrong: list[str] = []
    for task_id, record in sorted(records.items()):
        run_twice += [f"{task_id}: {why}" for why in _run_twice(queue_dir, models_dir, record, watch)]
        wrong += [f"{task_id}: {why}" for why in _wrong_ending(models_dir, record)]
    return Audit(len(records), lost, run_twice, wrong, corrupt_left(queue_dir, models_dir))


def _run_twice(queue_dir: Path, models_dir: Path, record: TaskRecord, watch: WorkerWatch | None) -> list[str]:
    """The definition of "run twice" (see conftest.py), one clause per check."""
    why = []
    lines = log_lines(queue_dir, record.task_id)
    results = sum(_RESULT_LINE in line for line in lines)
    starts = sum(bool(_ATTEMPT_LINE.search(line)) for line in lines)
    claims = sum(t.status is TaskStatus.RUNNING for t in record.history)
    handed_back = sum(
        a.status is TaskStatus.RUNNING and b.status is TaskStatus.QUEUED
        for a, b in zip(record.history, record.history[1:], strict=False)
    )
    reruns = sum(t.status is TaskStatus.RETRYING for t in record.history) + handed_back
    if results > 1 + reruns:
        why.append(f"{results} attempts produced a result; {reruns} re-run(s) recorded with a reason")
    if starts > claims:
        why.append(f"{starts} attempts started in its log, {claims} claimed in its history")
    # A wait for disk space gives its attempt back (engine/retries.py), as a clean hand-back does.
    disk_waits = sum(t.status is TaskStatus.RETRYING and t.note == "disk_full" for t in record.history)
    if record.attempts != claims - handed_back - disk_waits:
        counted = claims - handed_back - disk_waits
        why.append(f"attempts is {record.attempts}; its history records {counted}")
    for before, after in zip(record.history, record.history[1:], strict=False):
        if after.status is TaskStatus.RUNNING and before.status is not TaskStatus.QUEUED and not before.note:
            why.append(f"an attempt began after '{before.status.value}' with no reason recorded")
    if len(dirs := model_dirs_of(models_dir, record.task_id)) > 1:
        why.append(f"{len(dirs)} model folders: {dirs}")
    if watch is not None and record.task_id in watch.at_once:
        why.append(f"worker groups {sorted(watch.at_once[record.task_id])} alive at the same time")
    return why


def _wrong_ending(models_dir: Path, record: TaskRecord) -> list[str]:
    dirs = model_dirs_of(models_dir, record.task_id)
    if record.status is TaskStatus.COMPLETED and not dirs:
        return ["completed, but no model folder"]
    if record.status is TaskStatus.CANCELLED and dirs:
        return [f"cancelled, but its model is in {dirs}"]
    if record.status is TaskStatus.CANCELLED and not record.history[-1].note:
        return ["cancelled with no reason recorded"]
    if record.status is TaskStatus.FAILED and record.error is None:
        return ["failed with no error recorded"]
    return []


def first_claim_after(records: dict[str, TaskRecord], moment: float) -> float | None:
    """Seconds from `moment` to the first attempt any task began after it (None: none began)."""
    starts = [
        t.at for r in records.values() for t in r.history if t.status is TaskStatus.RUNNING and t.at >= moment
    ]
    return min(starts) - moment if starts else None
