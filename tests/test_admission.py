"""The admission rules as pure functions: cores, memory and GPUs against what running tasks hold, the
machine's thresholds, the head of the queue's reservation, and the reasons a task waits."""

from __future__ import annotations

import pytest
from scripted import gpu

from mcp_trainer.engine.admission import Claims, Thresholds, busy_reason, decide, never_fits
from mcp_trainer.engine.metrics import Machine
from mcp_trainer.engine.starts import AdmissionConfig, Starts
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import TaskRecord
from mcp_trainer.specs.resources import Grant, ResourceRequest
from mcp_trainer.specs.tabular import TabularSpec

MACHINE = Machine(cpus=4, memory_total_gb=16.0, memory_available_gb=14.0)
GPU_MACHINE = Machine(cpus=8, memory_total_gb=64.0, memory_available_gb=60.0, gpus=(gpu(0), gpu(1)))


def grant(cores: int, memory: float = 1.0, gpus: list[int] | None = None, share: float = 0.0) -> Grant:
    return Grant(cpu_cores=cores, memory_gb=memory, gpus=gpus or [], gpu_share=share)


def task(cores: int | None, memory: float = 1.0, user: str | None = None) -> TaskRecord:
    spec = TabularSpec(task_type="svm_classification", data_source="/d.csv", target_column="y")
    return TaskRecord(
        task_id=new_task_id(),
        spec=spec,
        user_id=user,
        resources=ResourceRequest(cpu_cores=cores, memory_gb=memory),
    )


def test_a_task_gets_the_cores_it_asks_for_when_they_are_free() -> None:
    decision = decide(ResourceRequest(cpu_cores=3, memory_gb=2), MACHINE, Claims(), fair_cores=1)
    assert decision == grant(3, 2.0)


def test_a_task_waits_for_cores_running_tasks_hold_and_says_how_many_are_free() -> None:
    claims = Claims.of([(None, grant(3))])
    assert decide(ResourceRequest(cpu_cores=2, memory_gb=1), MACHINE, claims, fair_cores=1) == (
        "waiting for 2 cores; 1 free"
    )


def test_a_task_with_no_core_count_gets_a_fair_share_of_the_free_cores() -> None:
    claims = Claims.of([(None, grant(1))])
    assert decide(ResourceRequest(memory_gb=1), MACHINE, claims, fair_cores=2) == grant(2)
    assert decide(ResourceRequest(memory_gb=1), MACHINE, claims, fair_cores=8) == grant(3)  # what is free


def test_memory_claims_never_add_up_past_the_threshold_share_of_the_machine() -> None:
    claims = Claims.of([(None, grant(1, memory=12.0))])  # 16 GB at 85%: 13.6 GB may be claimed
    assert decide(ResourceRequest(cpu_cores=1, memory_gb=2), MACHINE, claims, fair_cores=1) == (
        "waiting for 2 GB of memory; 1.6 GB free"
    )
    assert isinstance(
        decide(ResourceRequest(cpu_cores=1, memory_gb=1.5), MACHINE, claims, fair_cores=1), Grant
    )


def test_whole_gpus_are_never_shared_and_fractions_pack_onto_one_gpu() -> None:
    claims = Claims.of([(None, grant(1, gpus=[0], share=1.0))])
    whole = decide(ResourceRequest(cpu_cores=1, memory_gb=1, gpu_count=1), GPU_MACHINE, claims, fair_cores=1)
    assert isinstance(whole, Grant) and whole.gpus == [1]
    claims.add(None, whole)
    assert decide(
        ResourceRequest(cpu_cores=1, memory_gb=1, gpu_count=1), GPU_MACHINE, claims, fair_cores=1
    ) == ("waiting for 1 free GPU(s); 0 free")
    halves = Claims()
    first = decide(
        ResourceRequest(cpu_cores=1, memory_gb=1, gpu_count=0.5), GPU_MACHINE, halves, fair_cores=1
    )
    assert isinstance(first, Grant)
    halves.add(None, first)
    second = decide(
        ResourceRequest(cpu_cores=1, memory_gb=1, gpu_count=0.5), GPU_MACHINE, halves, fair_cores=1
    )
    assert isinstance(second, Grant) and second.gpus == first.gpus and second.gpu_share == 0.5


def test_a_gpu_without_the_memory_asked_for_is_not_given() -> None:
    machine = Machine(cpus=4, memory_total_gb=16, memory_available_gb=14, gpus=(gpu(0, used_mb=15000),))
    request = ResourceRequest(cpu_cores=1, memory_gb=1, gpu_count=1, gpu_memory_gb=4)
    assert decide(request, machine, Claims(), fair_cores=1) == "waiting for 1 free GPU(s); 0 free"


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (ResourceRequest(cpu_cores=5, memory_gb=1), "cpu_cores=5"),
        (ResourceRequest(cpu_cores=1, memory_gb=20), "memory_gb=20"),
        (ResourceRequest(cpu_cores=1, memory_gb=1, gpu_count=1), "gpu_count=1"),
    ],
)
def test_a_request_larger_than_the_machine_never_fits(request_: ResourceRequest, named: str) -> None:
    assert never_fits(request_, MACHINE) == named


def test_a_gpu_memory_request_above_the_largest_gpu_never_fits() -> None:
    request = ResourceRequest(cpu_cores=1, memory_gb=1, gpu_count=1, gpu_memory_gb=40)
    assert never_fits(request, GPU_MACHINE) == "gpu_memory_gb=40 (the largest GPU has 16.0 GB)"


def test_nothing_starts_while_the_machine_is_past_a_threshold_and_the_reason_says_which() -> None:
    limits = Thresholds()
    busy_cpu = Machine(cpus=4, memory_total_gb=16, memory_available_gb=14, cpu_percent=95.0)
    assert busy_reason(busy_cpu, limits) == "the machine's CPU is 95% busy with other work (starts below 90%)"
    full = Machine(cpus=4, memory_total_gb=16, memory_available_gb=1, memory_percent=90.0)
    assert busy_reason(full, limits) == "memory is 90% used (starts below 85%)"
    disk = Machine(cpus=4, memory_total_gb=16, memory_available_gb=14, disk_percent=95.0, disk_free_gb=5.0)
    assert "a disk is 95% full with 5.0 GB free" in (busy_reason(disk, limits) or "")
    roomy = Machine(cpus=4, memory_total_gb=16, memory_available_gb=14, disk_percent=95.0, disk_free_gb=200)
    assert busy_reason(roomy, limits) is None  # 95% of a large disk still leaves plenty


def test_the_head_of_the_queue_is_overtaken_only_until_its_reservation_starts() -> None:
    starts = Starts(AdmissionConfig(reserve_after_s=60), limit=3)
    big, small = task(cores=4), task(cores=1)
    held = [(None, grant(2))]
    first = starts.plan([big, small], held, MACHINE, now=1000.0)
    assert first.pick is not None and first.pick[0].task_id == small.task_id  # backfill
    assert first.reasons[big.task_id] == "waiting for 4 cores; 2 free"
    later = starts.plan([big, small], held, MACHINE, now=1061.0)
    assert later.pick is None
    assert later.reasons[big.task_id] == "waiting for 4 cores; 2 free; nothing behind it starts first"
    assert later.reasons[small.task_id].startswith(f"held back: {big.task_id}, ahead in line")
    freed = starts.plan([big, small], [], MACHINE, now=1062.0)
    assert freed.pick is not None and freed.pick[0].task_id == big.task_id


def test_a_task_the_machine_can_never_run_is_passed_over_not_waited_for() -> None:
    starts = Starts(AdmissionConfig(reserve_after_s=0), limit=3)
    impossible, small = task(cores=16), task(cores=1)
    plan = starts.plan([impossible, small], [], MACHINE, now=0.0)
    assert plan.pick is not None and plan.pick[0].task_id == small.task_id
    assert plan.reasons[impossible.task_id].startswith("cannot start on this machine (4 cores, 16.0 GB")


def test_the_concurrency_limit_still_bounds_how_many_run() -> None:
    plan = Starts(AdmissionConfig(), limit=1).plan([task(cores=1)], [(None, grant(1))], MACHINE, now=0.0)
    assert plan.pick is None
    assert next(iter(plan.reasons.values())) == "waiting for a free slot: 1 of 1 run"


def test_a_user_at_the_running_cap_waits_while_others_start() -> None:
    starts = Starts(AdmissionConfig(max_running_per_user=1), limit=3)
    mine, theirs = task(cores=1, user="ann"), task(cores=1, user="bob")
    plan = starts.plan([mine, theirs], [("ann", grant(1))], MACHINE, now=0.0)
    assert plan.pick is not None and plan.pick[0].task_id == theirs.task_id
    assert plan.reasons[mine.task_id] == "waiting: user 'ann' already runs 1 task(s), at most 1"


def test_thresholds_hold_every_start_and_name_the_reason_on_the_first_task() -> None:
    busy = Machine(cpus=4, memory_total_gb=16, memory_available_gb=14, cpu_percent=99.0)
    first = task(cores=1)
    plan = Starts(AdmissionConfig(thresholds=Thresholds()), limit=3).plan([first], [], busy, now=0.0)
    assert plan.pick is None
    assert plan.reasons[first.task_id].startswith("waiting: the machine's CPU is 99% busy")
