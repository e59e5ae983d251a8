"""Resource requests at submit (defaults, refusals naming the machine) and admission with real worker
processes: tasks that each claim the whole machine never overlap, and each worker is sized to its grant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_calls import call_error

from mcp_trainer import AdmissionConfig, InvalidInputError, TaskStatus, Thresholds, TrainingService
from mcp_trainer.engine.worker import place
from mcp_trainer.machine import available_cpus
from mcp_trainer.server import ServerConfig, build_server

pytestmark = pytest.mark.anyio


def search(data: Path, **extra: Any) -> dict[str, Any]:
    spec = {"task_type": "svm_classification", "data_source": str(data), "target_column": "label"}
    return spec | {"n_trials": 2, "cv_folds": 2} | extra


async def test_a_searchs_default_cores_are_its_parallel_trials_and_its_memory_follows_its_data(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        view = await svc.submit(search(blobs_csv, n_parallel_trials=1))
        assert view.resources is not None
        assert view.resources.cpu_cores == 1 and view.resources.gpu_count == 0
        assert view.resources.memory_gb == 0.5  # a few KB of data: the floor
        fair = await svc.submit(search(blobs_csv))
        assert fair.resources is not None and fair.resources.cpu_cores is None  # a fair share when it starts
        asked = await svc.submit(search(blobs_csv), cpu_cores=1, memory_gb=2.5)
        assert asked.resources is not None and (asked.resources.cpu_cores, asked.resources.memory_gb) == (
            1,
            2.5,
        )


@pytest.mark.parametrize(
    ("extra", "options", "words"),
    [
        ({}, {"cpu_cores": 1000}, "cpu_cores=1000 can never be met"),
        ({}, {"memory_gb": 60_000}, "memory_gb=60000 can never be met"),
        ({}, {"gpu_count": 1}, "scikit-learn tasks run on CPUs only"),
        ({}, {"gpu_memory_gb": 4}, "gpu_memory_gb needs a GPU"),
        ({"n_parallel_trials": 2}, {"cpu_cores": 1}, "n_parallel_trials=2 runs 2 processes but cpu_cores=1"),
    ],
)
async def test_an_impossible_or_inconsistent_request_is_refused_at_submit_and_nothing_is_queued(
    queue_dir: Path,
    models_dir: Path,
    blobs_csv: Path,
    extra: dict[str, Any],
    options: dict[str, Any],
    words: str,
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError, match=words):
            await svc.submit(search(blobs_csv, **extra), **options)
        assert (await svc.list_tasks()).total == 0


async def test_a_request_too_big_for_the_machine_is_refused_by_the_tool_naming_the_machines_size(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server) as client:
        message = await call_error(client, "submit_training_task", search(blobs_csv) | {"cpu_cores": 1000})
    assert f"This machine has {available_cpus()} cores" in message and "cpu_cores=1000" in message


def test_a_worker_sizes_its_thread_pools_and_sees_only_its_gpus_before_importing_anything_heavy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(name, "99")
    place(2, [1, 3])
    assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "2"
    assert os.environ["MKL_NUM_THREADS"] == "2" and os.environ["CUDA_VISIBLE_DEVICES"] == "1,3"
    place(1, [])
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # no GPU granted: none visible


async def test_tasks_that_each_claim_every_core_never_run_at_the_same_time(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    cores = available_cpus()
    spec = search(slow_csv, n_trials=1000, timeout_s=1.5, cv_folds=3)
    async with TrainingService(queue_dir, models_dir, max_concurrent=3, poll_interval_s=0.05) as svc:
        ids = [(await svc.submit(spec, cpu_cores=cores)).task_id for _ in range(2)]
        ended = [await svc.wait(task_id, timeout_s=120) for task_id in ids]
        assert [v.status for v in ended] == [TaskStatus.COMPLETED, TaskStatus.COMPLETED]
        records = [await svc.record(task_id) for task_id in ids]
        runs = sorted(
            (next(h.at for h in r.history if h.status is TaskStatus.RUNNING), r.finished_at) for r in records
        )
        assert all(r.grant is not None and r.grant.cpu_cores == cores for r in records)
        first_end, second_start = runs[0][1], runs[1][0]
        assert first_end is not None and second_start >= first_end  # one after the other, never both
        assert svc.peak_running == 1
        logs = await svc.logs(ids[0], tail=200)
        assert any(f"with a share of {cores} CPU(s)" in line for line in logs)


async def started_at(svc: TrainingService, task_id: str, timeout: float = 60.0) -> float:
    """When the task first started, once it has."""
    with anyio.fail_after(timeout):
        while True:
            record = await svc.record(task_id)
            runs = [h.at for h in record.history if h.status is TaskStatus.RUNNING]
            if runs:
                return runs[0]
            await anyio.sleep(0.05)


async def test_a_small_task_overtakes_a_big_one_only_while_it_cannot_start_and_the_big_one_starts_soon(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    cores = available_cpus()
    if cores < 2:
        pytest.skip("needs 2 cores: one running task, one core left for a small one")
    spec = search(slow_csv, n_trials=1000, timeout_s=2.0, cv_folds=3, n_parallel_trials=1)
    admission = AdmissionConfig(thresholds=Thresholds(100.0, 100.0, 100.0), reserve_after_s=1.0)
    async with TrainingService(
        queue_dir, models_dir, max_concurrent=4, poll_interval_s=0.05, admission=admission
    ) as svc:
        running = (await svc.submit(spec | {"timeout_s": 60.0}, cpu_cores=cores - 1)).task_id
        await started_at(svc, running)
        big = (await svc.submit(spec | {"n_parallel_trials": cores}, cpu_cores=cores)).task_id
        small = (await svc.submit(spec, cpu_cores=1)).task_id  # fits beside the running one
        small_start = await started_at(svc, small)
        with anyio.fail_after(30):
            while "nothing behind it starts first" not in ((await svc.status(big)).waiting_for or ""):
                await anyio.sleep(0.05)
        late = (await svc.submit(spec, cpu_cores=1)).task_id
        await svc.wait(small, timeout_s=30)  # a core is free now, and `late` would fit in it ...
        with anyio.fail_after(10):  # ... but the big one is reserved
            while not ((await svc.status(late)).waiting_for or "").startswith(f"held back: {big}, ahead"):
                await anyio.sleep(0.05)
        assert (await svc.record(running)).status is TaskStatus.RUNNING
        await svc.stop(running)  # it keeps its best so far and ends: every core is free
        big_start = await started_at(svc, big)
        late_start = await started_at(svc, late)
        records = {t: await svc.record(t) for t in (running, small)}
        freed = max(r.finished_at or 0.0 for r in records.values())
        assert small_start < big_start  # overtaken while it could not start
        assert big_start >= freed  # never beside them: it claims every core
        assert big_start - freed < 10.0  # and as soon as they ended (a bound with room for a loaded machine)
        assert late_start >= (await svc.record(big)).finished_at  # type: ignore[operator]
        for task in (running, big, small, late):
            assert (await svc.wait(task, timeout_s=60)).status is TaskStatus.COMPLETED
