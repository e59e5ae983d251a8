"""An executor whose runs the test drives: each run reports what the test tells it to, and ends when the
test says so (or when it is stopped). For scheduler tests that are about decisions, not processes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from mcp_trainer.engine.executor import Executor, RunHandle, WorkerMessage
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.metrics import MetricsHistory, Sample
from mcp_trainer.engine.scheduler import Scheduler
from mcp_trainer.engine.starts import AdmissionConfig
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.ids import new_task_id
from mcp_trainer.machine import GpuInfo
from mcp_trainer.records import TaskError, TaskRecord
from mcp_trainer.specs import AnySpec
from mcp_trainer.specs.options import DependencyPolicy
from mcp_trainer.specs.resources import ResourceRequest
from mcp_trainer.specs.tabular import TabularSpec

__all__ = ["Bench", "FakeMetrics", "ScriptedExecutor", "Start", "bench", "gpu"]


def gpu(index: int, used_mb: float = 0.0, total_mb: float = 16384.0) -> GpuInfo:
    return GpuInfo(index=index, name="Fake GPU", memory_used_mb=used_mb, memory_total_mb=total_mb)


class FakeMetrics(MetricsHistory):
    """A machine of the test's choosing: its size, and the use each sample reports (change the fields)."""

    def __init__(self, cpus: int = 4, memory_gb: float = 16.0, gpus: Sequence[GpuInfo] = ()) -> None:
        super().__init__({}, every_s=0.05, gpus=lambda: list(self.gpus))
        self.cpus = cpus
        self.memory_total_gb = memory_gb
        self.gpus = list(gpus)
        self.cpu_percent = 5.0
        self.memory_percent = 10.0
        self.disks_now: dict[str, tuple[float, float]] = {"queue": (10.0, 500.0)}
        self.rss_gb: dict[int, float] = {}

    def sample(self, own: Sequence[int] = ()) -> Sample:
        sample = Sample(
            at=time.time(),
            cpu_percent=self.cpu_percent,
            memory_percent=self.memory_percent,
            memory_available_gb=self.memory_total_gb * (1 - self.memory_percent / 100),
            disks=dict(self.disks_now),
            gpus=list(self.gpus),
            window_s=1.0,
            own_rss_gb={pid: self.rss_gb[pid] for pid in own if pid in self.rss_gb},
        )
        with self._guard:
            self._samples.append(sample)
        return sample


@dataclass
class Start:
    """One start of a run: which task, what it was given, when."""

    task_id: str
    cpu_share: int
    gpus: tuple[int, ...]
    at: float
    ended_at: float | None = None


class _Handle(RunHandle):
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.pid = None
        self.started_at = None
        self.send, self.receive = anyio.create_memory_object_stream[WorkerMessage | None](100)

    def exit_description(self) -> str:
        return "exited with code 0"

    def close(self) -> None:
        self.send.close()
        self.receive.close()


@dataclass
class ScriptedExecutor(Executor):
    """Runs that last until `end(task_id, ...)`; `starts` lists every start in order."""

    starts: list[Start] = field(default_factory=list)
    handles: dict[str, _Handle] = field(default_factory=dict)
    warm: set[str] = field(default_factory=set)  # task types it is ready for (the rest: warm_up them)
    warm_ups: list[list[str]] = field(default_factory=list)  # every warm_up call's task types

    def warm_up(self, task_types: Iterable[str] = ()) -> None:
        self.warm_ups.append(list(task_types))
        self.warm.update(task_types)

    def is_warm_for(self, task_type: str) -> bool:
        return task_type in self.warm

    async def start(self, record: TaskRecord, *, cpu_share: int, gpus: Sequence[int] = ()) -> RunHandle:
        handle = _Handle(record.task_id)
        self.handles[record.task_id] = handle
        self.starts.append(Start(record.task_id, cpu_share, tuple(gpus), time.monotonic()))
        return handle

    def running(self) -> list[str]:
        return [s.task_id for s in self.starts if s.ended_at is None]

    def send(self, task_id: str, kind: str, payload: dict[str, Any]) -> None:
        self.handles[task_id].send.send_nowait((kind, payload))

    def end(self, task_id: str, error: TaskError | None = None) -> None:
        """End the run: with an error (as a worker reports one), or as a worker that vanished."""
        if error is not None:
            self.send(task_id, "error", error.model_dump(mode="json"))
        self.handles[task_id].send.send_nowait(None)

    def close(self) -> None:
        """Close every run's streams (at the end of a test)."""
        for handle in self.handles.values():
            handle.close()

    async def messages(self, handle: RunHandle) -> AsyncGenerator[WorkerMessage, None]:
        assert isinstance(handle, _Handle)
        try:
            async for message in handle.receive:
                if message is None:
                    return
                yield message
        finally:
            handle.close()
            for s in self.starts:
                if s.task_id == handle.task_id and s.ended_at is None:
                    s.ended_at = time.monotonic()

    async def stop(self, handle: RunHandle) -> None:
        assert isinstance(handle, _Handle)
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.WouldBlock):
            handle.send.send_nowait(None)

    async def finish(self, handle: RunHandle) -> None:
        await self.stop(handle)

    async def wait_gone(self, handle: RunHandle, timeout_s: float) -> None:
        return None

    async def run_job(self, target: str, kwargs: dict[str, Any], timeout_s: float) -> Any:
        raise NotImplementedError


class Bench:
    """A queue, its scheduler and the scripted runs, on a fake machine."""

    def __init__(self, store: TaskStore, scheduler: Scheduler, executor: ScriptedExecutor) -> None:
        self.store, self.scheduler, self.executor = store, scheduler, executor

    def add(
        self,
        cores: int | None,
        memory_gb: float = 1.0,
        gpu_count: float = 0.0,
        spec: AnySpec | None = None,
        depends_on: Sequence[str] = (),
        on_dependency_failure: DependencyPolicy = "cancel",
    ) -> str:
        spec = spec or TabularSpec(task_type="svm_classification", data_source="/data.csv", target_column="y")
        request = ResourceRequest(cpu_cores=cores, memory_gb=memory_gb, gpu_count=gpu_count)
        record = TaskRecord(
            task_id=new_task_id(),
            spec=spec,
            resources=request,
            depends_on=list(depends_on),
            on_dependency_failure=on_dependency_failure,
        )
        self.store.create(record)
        self.scheduler.wake()
        return record.task_id

    def get(self, task_id: str) -> TaskRecord:
        return self.store.get(task_id)

    async def until(self, holds: Callable[[], bool], timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not holds():
                self.store.refresh()
                await anyio.sleep(0.01)

    def started(self, task_id: str) -> bool:
        return any(s.task_id == task_id for s in self.executor.starts)


@asynccontextmanager
async def bench(
    queue_dir: Path,
    models_dir: Path,
    metrics: FakeMetrics,
    limit: int = 3,
    warm_up: bool = False,
    **admission: float,
) -> AsyncIterator[Bench]:
    models_dir.mkdir(parents=True, exist_ok=True)
    store = TaskStore(QueueLayout.at(queue_dir))
    executor = ScriptedExecutor()
    config = AdmissionConfig(**admission)  # type: ignore[arg-type]
    scheduler = Scheduler(
        store, executor, models_dir, limit=limit, poll_interval_s=0.01, metrics=metrics, admission=config
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run, warm_up)
        try:
            yield Bench(store, scheduler, executor)
        finally:
            tg.cancel_scope.cancel()
    executor.close()
    store.close()
