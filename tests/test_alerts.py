"""Alerts: the rules on a task's progress and memory and on the machine's history, and how they reach
get_task_status, get_queue_status and get_alerts."""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import anyio
import pytest
from scripted import FakeMetrics, ScriptedExecutor, gpu

from mcp_trainer import InvalidInputError, TrainingService
from mcp_trainer.engine.alerts import AlertRules, TaskWatch, machine_alerts, merge, task_alerts
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.metrics import Sample
from mcp_trainer.engine.scheduler import Scheduler
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import Alert, Progress, Severity, TaskRecord, TaskStatus, TrainingProgress
from mcp_trainer.service.monitoring import fresh_samples
from mcp_trainer.specs.resources import ResourceRequest
from mcp_trainer.specs.tabular import TabularSpec

pytestmark = pytest.mark.anyio
RULES = AlertRules()
TASK = "task_20261202T000000_0000000a"


def step(n: int, loss: float | None = None) -> Progress:
    training = TrainingProgress(epoch=n / 10, n_epochs=1, step=n, total_steps=10, loss=loss)
    return Progress(percent=n * 10, phase="training", training=training)


def kinds(alerts: list[Alert]) -> list[tuple[str, Severity]]:
    return [(a.kind, a.severity) for a in alerts]


def check(watch: TaskWatch, now: float, rss_gb: float | None = None, claim: float = 4.0) -> list[Alert]:
    return task_alerts(TASK, watch, rss_gb=rss_gb, memory_claim_gb=claim, now=now, rules=RULES)


def test_a_task_without_progress_for_the_stall_time_is_stalled_and_critical_after_three_times() -> None:
    watch = TaskWatch(now=0.0)
    watch.observe(step(1), 0.0)
    assert check(watch, 599.0) == []
    stalled = check(watch, 600.0)
    assert (
        kinds(stalled) == [("stalled", Severity.WARNING)] and stalled[0].message == "no progress for 10 min"
    )
    assert kinds(check(watch, 1800.0)) == [("stalled", Severity.CRITICAL)]


def test_a_step_taking_far_longer_than_the_usual_ones_is_overdue() -> None:
    watch = TaskWatch(now=0.0)
    for n in range(6):
        watch.observe(step(n), n * 10.0)  # a step every 10 s
    assert check(watch, 50.0 + 119.0) == []  # at least 2 minutes before saying so
    overdue = check(watch, 50.0 + 121.0)
    assert kinds(overdue) == [("overdue", Severity.WARNING)]
    assert overdue[0].message == "the current step has taken 2 min; they usually take 10 s"


def test_a_nan_training_loss_is_critical() -> None:
    watch = TaskWatch(now=0.0)
    watch.observe(step(1, loss=0.7), 1.0)
    watch.observe(step(2, loss=math.nan), 2.0)
    alerts = check(watch, 3.0)
    assert kinds(alerts) == [("loss_nan", Severity.CRITICAL)] and "diverged" in alerts[0].message


def test_a_loss_far_above_its_recent_median_is_a_spike_and_clears_when_it_falls_back() -> None:
    watch = TaskWatch(now=0.0)
    for n, loss in enumerate([1.0, 0.9, 0.8, 0.8, 0.7, 0.7]):
        watch.observe(step(n, loss=loss), float(n))
    assert check(watch, 6.0) == []
    watch.observe(step(7, loss=5.0), 7.0)
    spike = check(watch, 7.5)
    assert kinds(spike) == [("loss_spike", Severity.WARNING)] and "jumped to 5" in spike[0].message
    watch.observe(step(8, loss=0.7), 8.0)
    assert check(watch, 8.5) == []


def test_memory_near_a_tasks_claim_warns_and_past_it_is_critical() -> None:
    watch = TaskWatch(now=0.0)
    assert check(watch, 1.0, rss_gb=3.0) == []
    near = check(watch, 1.0, rss_gb=3.7)
    assert kinds(near) == [("memory_high", Severity.WARNING)]
    assert near[0].message.startswith("its processes use 3.70 GB of memory, near the 4 GB it claimed")
    assert kinds(check(watch, 1.0, rss_gb=4.5)) == [("memory_high", Severity.CRITICAL)]


def sample(at: float, free_gb: float = 100.0, memory: float = 30.0, used_disk: float = 50.0) -> Sample:
    return Sample(
        at=at,
        cpu_percent=10,
        memory_percent=memory,
        memory_available_gb=8,
        disks={"models": (used_disk, free_gb)},
        gpus=[gpu(0, used_mb=16000)],
    )


def test_a_disk_whose_free_space_falls_fast_enough_to_run_out_soon_raises_disk_filling() -> None:
    falling = [sample(t, free_gb=10.0 - t * 0.005) for t in range(0, 300, 5)]  # 5 MB/s: ~30 min left
    alerts = {a.kind: a for a in machine_alerts(falling, RULES)}
    assert "disk_filling" in alerts and alerts["disk_filling"].severity is Severity.WARNING
    assert alerts["disk_filling"].message.startswith("the models disk fills in about")
    steady = [sample(t, free_gb=10.0) for t in range(0, 300, 5)]
    assert "disk_filling" not in {a.kind for a in machine_alerts(steady, RULES)}


def test_a_full_disk_high_memory_and_gpu_memory_are_machine_alerts_since_they_began() -> None:
    history = [sample(0.0), sample(5.0, memory=93.0, used_disk=96.0, free_gb=0.5), sample(10.0, memory=98.0)]
    history[-1].disks["models"] = (96.0, 0.5)
    alerts = {a.kind: a for a in machine_alerts(history, RULES)}
    assert alerts["memory_high"].severity is Severity.CRITICAL and alerts["memory_high"].since == 5.0
    assert alerts["disk_full"].severity is Severity.CRITICAL and "0.50 GB free" in alerts["disk_full"].message
    assert alerts["gpu_memory_high"].since == 0.0 and alerts["gpu_memory_high"].task_id is None


def test_an_alert_raised_again_keeps_the_time_it_was_first_seen() -> None:
    first = Alert(kind="stalled", severity=Severity.WARNING, message="a", since=10.0, task_id=TASK)
    again = Alert(kind="stalled", severity=Severity.CRITICAL, message="b", since=50.0, task_id=TASK)
    assert merge([first], [again])[0].since == 10.0 and merge([], [again])[0].since == 50.0


async def test_the_owner_writes_a_stalled_tasks_alert_into_its_status_and_clears_it_when_it_moves(
    queue_dir: Path, models_dir: Path
) -> None:
    models_dir.mkdir(parents=True)
    store = TaskStore(QueueLayout.at(queue_dir))
    executor = ScriptedExecutor()
    scheduler = Scheduler(
        store,
        executor,
        models_dir,
        limit=1,
        poll_interval_s=0.01,
        metrics=FakeMetrics(),
        alert_rules=AlertRules(stalled_after_s=0.3),
    )
    spec = TabularSpec(task_type="svm_classification", data_source="/d.csv", target_column="y")
    record = TaskRecord(task_id=new_task_id(), spec=spec, resources=ResourceRequest(cpu_cores=1, memory_gb=1))
    store.create(record)
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run, False)
        with anyio.fail_after(10):
            while [a.kind for a in store.get(record.task_id).alerts] != ["stalled"]:
                await anyio.sleep(0.02)
            percent = 0.0
            while store.get(record.task_id).alerts:  # moving again, faster than the stall time
                percent += 1
                progress = Progress(percent=percent, phase="searching", trial=int(percent))
                executor.send(record.task_id, "progress", progress.model_dump())
                await anyio.sleep(0.05)
        executor.end(record.task_id)
        tg.cancel_scope.cancel()
    executor.close()
    store.close()


async def test_get_alerts_lists_running_tasks_alerts_most_severe_first_and_filters_by_severity(
    queue_dir: Path, models_dir: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        store = svc._parts().store
        spec = TabularSpec(task_type="svm_classification", data_source="/d.csv", target_column="y")
        ids = [new_task_id() for _ in range(3)]
        now = time.time()
        for task_id, severity, status in zip(
            ids,
            [Severity.WARNING, Severity.CRITICAL, Severity.CRITICAL],
            [TaskStatus.RUNNING, TaskStatus.RUNNING, TaskStatus.QUEUED],
            strict=True,
        ):
            record = TaskRecord(task_id=task_id, spec=spec, status=status)
            record.alerts = [
                Alert(kind="stalled", severity=severity, message="m", since=now, task_id=task_id)
            ]
            store.create(record)
        view = await svc.alerts()
        task_alerts_seen = [a.task_id for a in view.alerts if a.task_id is not None]
        assert task_alerts_seen == [ids[1], ids[0]]  # the queued one's alert is stale: not shown
        assert view.counts["critical"] >= 1 and view.counts["warning"] >= 1
        critical = await svc.alerts("critical")
        assert all(a.severity is Severity.CRITICAL for a in critical.alerts)
        assert ids[0] not in [a.task_id for a in critical.alerts]
        status = await svc.status(ids[1])
        assert [a.kind for a in status.alerts] == ["stalled"]
        queue = await svc.queue_status()
        assert {a.task_id for a in queue.alerts} >= {ids[0], ids[1]}
        assert queue.history and queue.history[-1].ago_s < 60
        with pytest.raises(InvalidInputError, match="min_severity must be one of info, warning, critical"):
            await svc.alerts("urgent")


def test_only_a_server_that_does_not_execute_samples_the_machine_when_asked() -> None:
    owner, reader = FakeMetrics(), FakeMetrics()
    fresh_samples(cast(Scheduler, SimpleNamespace(is_owner=True, metrics=owner)))
    fresh_samples(cast(Scheduler, SimpleNamespace(is_owner=False, metrics=reader)))
    # The owner samples on its own with its workers' pids: a sample without them would count their CPU
    # as other work and could hold starts.
    assert (len(owner.samples()), len(reader.samples())) == (0, 1)
