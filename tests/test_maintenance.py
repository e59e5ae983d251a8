"""Queue maintenance on a queue in tmp_path: pruning work files, archiving old tasks (and reading them
back), the disk report, retry candidates, dry runs, links planted in the archive, and the periodic run."""

from __future__ import annotations

import ast
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_calls import call, call_error

from mcp_trainer import InvalidInputError, InvalidStateError, TaskStatus, TrainingService
from mcp_trainer.cli import parse_args
from mcp_trainer.engine import layout as layout_module
from mcp_trainer.engine.archive import month_of
from mcp_trainer.engine.layout import CHECKPOINTS_DIR, QueueLayout
from mcp_trainer.engine.maintenance import DAY_S, Policy, run_maintenance
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import TaskNotFoundError
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import ErrorKind, TaskRecord
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.service import maintenance as service_maintenance
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.tabular import TabularSpec

NOW = 1_800_000_000.0  # 2027-01-15, the "now" of the engine's runs
POLICY = Policy(archive_after_s=30 * DAY_S, prune_work_after_s=7 * DAY_S)


def task(
    status: TaskStatus = TaskStatus.COMPLETED,
    *,
    days_ago: float = 1.0,
    now: float = NOW,
    finetune: bool = False,
    error: ErrorKind | None = None,
    **fields: Any,
) -> TaskRecord:
    """A record that ended `days_ago` days before `now` (or, not ended, was created then)."""
    at = now - days_ago * DAY_S
    created = at - 60 if status.is_terminal() else at
    spec = (
        FinetuneSpec(task_type="text_classification_finetune", model_path="/m", data_source="/d.csv")
        if finetune
        else TabularSpec(task_type="svm_classification", data_source="/data/x.csv", target_column="label")
    )
    return TaskRecord.model_validate(
        {
            "task_id": new_task_id(created),
            "spec": spec.model_dump(),
            "status": status,
            "created_at": created,
            "created_ns": int(created * 1e9),
            "finished_at": at if status.is_terminal() else None,
            "error": {"kind": error, "message": "it failed"} if error else None,
            **fields,
        }
    )


def seed(
    store: TaskStore, record: TaskRecord, *, log: bytes = b"", work: dict[str, bytes] | None = None
) -> None:
    """Write the task file, and the task's log and work files."""
    store.create(record)
    if log:
        store.layout.log_file(record.task_id).write_bytes(log)
    for name, data in (work or {}).items():
        path = store.layout.work_path(record.task_id) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every entry under `root` (no link followed): whether a link, its size and mtime."""
    found: dict[str, tuple[bool, int, int]] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            st = path.lstat()
            found[str(path.relative_to(root))] = (path.is_symlink(), st.st_size, st.st_mtime_ns)
    return found


@pytest.fixture
def store(queue_dir: Path) -> Iterator[TaskStore]:
    s = TaskStore(QueueLayout.at(queue_dir))
    yield s
    s.close()


# -- pruning work files ------------------------------------------------------------------------------


def test_an_ended_fine_tunes_checkpoints_are_removed_at_once_and_a_running_ones_are_kept(
    store: TaskStore, models_dir: Path
) -> None:
    ended = task(TaskStatus.CANCELLED, days_ago=0.01, finetune=True)
    running = task(TaskStatus.RUNNING, days_ago=0.01, finetune=True)
    files = {"checkpoints/step-000000010.pt": b"w" * 1000, "study.journal": b"{}\n"}
    seed(store, ended, work=files)
    seed(store, running, work=files)
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert not (store.layout.work_path(ended.task_id) / CHECKPOINTS_DIR).exists()
    assert (store.layout.work_path(ended.task_id) / "study.journal").exists()
    assert (store.layout.work_path(running.task_id) / CHECKPOINTS_DIR / "step-000000010.pt").exists()
    assert (report.checkpoints_pruned.count, report.checkpoints_pruned.bytes) == (1, 1000)
    assert report.checkpoints_pruned.task_ids == [ended.task_id]
    assert not [p for p in store.layout.work_dir.iterdir() if p.name.startswith(".pruning-")]


def test_the_checkpoints_of_a_task_a_retry_could_resume_stay_until_the_work_folders_age_limit(
    store: TaskStore, models_dir: Path
) -> None:
    lost = task(TaskStatus.FAILED, days_ago=6.9, finetune=True, error=ErrorKind.WORKER_LOST)
    full = task(TaskStatus.FAILED, days_ago=7.1, finetune=True, error=ErrorKind.DISK_FULL)
    for r in (lost, full):
        seed(store, r, work={"checkpoints/step-000000001.pt": b"w"})
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert (store.layout.work_path(lost.task_id) / CHECKPOINTS_DIR / "step-000000001.pt").exists()
    assert not store.layout.work_path(full.task_id).exists()
    assert report.checkpoints_pruned.count == 0
    assert report.work_pruned.task_ids == [full.task_id]


def test_a_searchs_study_journal_stays_exactly_the_work_age_limit_and_goes_after_it(
    store: TaskStore, models_dir: Path
) -> None:
    at_limit = task(days_ago=7.0)
    past = task(TaskStatus.FAILED, days_ago=7.0 + 1 / DAY_S, error=ErrorKind.DATA_ERROR)
    for r in (at_limit, past):
        seed(store, r, work={"study.journal": b"x" * 300, "study.journal.flock": b""})
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert (store.layout.work_path(at_limit.task_id) / "study.journal").exists()
    assert not store.layout.work_path(past.task_id).exists()
    assert (report.work_pruned.count, report.work_pruned.bytes, report.work_pruned.task_ids) == (
        1,
        300,
        [past.task_id],
    )
    assert store.get(past.task_id) == past  # the task itself stays


def test_work_folders_of_no_task_go_after_the_age_limit_and_those_of_archived_tasks_at_once(
    store: TaskStore, models_dir: Path
) -> None:
    fresh_orphan, old_orphan = new_task_id(NOW), new_task_id(NOW - 8 * DAY_S)
    for task_id, age in ((fresh_orphan, 1.0), (old_orphan, 8.0)):
        folder = store.layout.work_path(task_id)
        folder.mkdir(parents=True)
        os.utime(folder, (NOW - age * DAY_S, NOW - age * DAY_S))
    archived = task(days_ago=40)
    store.create(archived)
    store.archive_ended(NOW - 30 * DAY_S)
    store.layout.work_path(archived.task_id).mkdir()  # as a crash between archiving and pruning leaves it
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert store.layout.work_path(fresh_orphan).is_dir()
    assert not store.layout.work_path(old_orphan).exists()
    assert not store.layout.work_path(archived.task_id).exists()
    assert sorted(report.orphans_pruned.task_ids) == sorted([old_orphan, archived.task_id])


def test_a_link_planted_as_a_work_folder_is_removed_and_its_target_kept(
    store: TaskStore, models_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "precious"
    (elsewhere / CHECKPOINTS_DIR).mkdir(parents=True)
    (elsewhere / CHECKPOINTS_DIR / "keep.pt").write_bytes(b"mine")
    ended = task(TaskStatus.CANCELLED, days_ago=1, finetune=True)
    store.create(ended)
    store.layout.work_path(ended.task_id).symlink_to(elsewhere)
    orphan = store.layout.work_path(new_task_id(NOW))
    orphan.symlink_to(elsewhere)
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert (elsewhere / CHECKPOINTS_DIR / "keep.pt").read_bytes() == b"mine"
    assert not orphan.is_symlink()
    assert report.checkpoints_pruned.count == 0
    assert any("symbolic link" in p for p in report.problems)


def test_the_trainers_checkpoint_folder_is_the_one_maintenance_prunes() -> None:
    source = Path(layout_module.__file__).parents[1] / "trainers" / "finetune" / "train.py"
    names = {
        node.targets[0].id: node.value.value
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    assert names["CHECKPOINTS_DIR"] == CHECKPOINTS_DIR


def dataset(store: TaskStore, task_id: str, size: int = 40, *, days_ago: float | None = None) -> Path:
    """A task's datasets folder, as a preprocess task leaves it (last touched `days_ago` before NOW)."""
    folder = store.layout.dataset_path(task_id)
    folder.mkdir(parents=True)
    (folder / "data.csv").write_bytes(b"d" * size)
    if days_ago is not None:
        os.utime(folder, (NOW - days_ago * DAY_S, NOW - days_ago * DAY_S))
    return folder


def test_a_live_tasks_datasets_stay_past_the_work_age_and_go_when_the_task_is_archived(
    store: TaskStore, models_dir: Path
) -> None:
    kept, archived = task(days_ago=20), task(days_ago=40)
    for r in (kept, archived):
        store.create(r)
        dataset(store, r.task_id)
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert (store.layout.dataset_path(kept.task_id) / "data.csv").exists()
    assert not store.layout.dataset_path(archived.task_id).exists()
    assert (report.datasets_pruned.count, report.datasets_pruned.bytes) == (1, 40)
    assert report.datasets_pruned.task_ids == [archived.task_id]
    assert report.archived.task_ids == [archived.task_id]


def test_datasets_of_no_task_go_after_the_work_age_and_half_written_ones_of_a_dead_writer_at_once(
    store: TaskStore, models_dir: Path
) -> None:
    fresh, old = new_task_id(NOW), new_task_id(NOW - 8 * DAY_S)
    dataset(store, fresh, days_ago=1)
    dataset(store, old, 25, days_ago=8)
    dead_writer = store.layout.datasets_dir / f".tmp-{fresh}-999999999"
    (dead_writer / "train.csv").parent.mkdir()
    (dead_writer / "train.csv").write_bytes(b"t" * 5)
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert store.layout.dataset_path(fresh).is_dir() and not store.layout.dataset_path(old).exists()
    assert not dead_writer.exists()
    assert report.datasets_pruned.task_ids == [old] and report.datasets_pruned.bytes == 25
    assert report.orphans_pruned.bytes == 5
    assert (report.disk.datasets.files, report.disk.datasets.bytes) == (1, 40)


# -- archiving ---------------------------------------------------------------------------------------


def test_tasks_ended_more_than_the_archive_age_ago_move_to_a_monthly_file_with_their_log_and_work_removed(
    store: TaskStore, models_dir: Path
) -> None:
    at_limit = task(days_ago=30.0)
    old = task(TaskStatus.FAILED, days_ago=30.0 + 1 / DAY_S, error=ErrorKind.DATA_ERROR)
    running = task(TaskStatus.RUNNING, days_ago=90.0)
    seed(store, at_limit)
    seed(store, old, log=b"a log line\n", work={"study.journal": b"j" * 50})
    seed(store, running)
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    month_file = store.layout.archive_dir / f"{month_of(old)}.jsonl"
    lines = month_file.read_bytes().splitlines()
    assert [TaskRecord.model_validate_json(line) for line in lines] == [old]
    assert not store.layout.task_file(old.task_id).exists()
    assert not store.layout.log_file(old.task_id).exists()
    assert not store.layout.work_path(old.task_id).exists()
    assert store.get(at_limit.task_id) == at_limit
    assert store.get(running.task_id) == running
    task_file_bytes = len(old.model_dump_json())
    assert report.archived.task_ids == [old.task_id]
    assert report.archived.bytes == task_file_bytes + len(b"a log line\n") + 50
    assert report.archive_files == [month_file.name]
    assert report.disk.archive.files == 1


def test_archiving_again_adds_to_the_months_file_and_keeps_one_line_per_task(
    store: TaskStore, models_dir: Path
) -> None:
    first, second = task(days_ago=40), task(days_ago=40.5)
    store.create(first)
    run_maintenance(store, models_dir, POLICY, now=NOW)
    store.create(second)
    # A crash between writing the archive and removing the task file leaves the task in both places.
    store.layout.task_file(first.task_id).write_text(first.model_dump_json())
    store.refresh()
    run_maintenance(store, models_dir, POLICY, now=NOW)
    month_file = store.layout.archive_dir / f"{month_of(first)}.jsonl"
    ids = [json.loads(line)["task_id"] for line in month_file.read_text().splitlines()]
    assert sorted(ids) == sorted([first.task_id, second.task_id])
    assert [p.name for p in store.layout.archive_dir.iterdir()] == [month_file.name]


def test_a_dry_run_changes_nothing_and_reports_what_the_run_then_does(
    store: TaskStore, models_dir: Path, queue_dir: Path
) -> None:
    seed(store, task(days_ago=40), log=b"log\n", work={"study.journal": b"j"})
    seed(store, task(days_ago=10), work={"study.journal": b"jj"})
    seed(store, task(TaskStatus.CANCELLED, days_ago=1, finetune=True), work={"checkpoints/a.pt": b"ccc"})
    orphan = store.layout.work_path(new_task_id(NOW - 9 * DAY_S))
    orphan.mkdir()
    os.utime(orphan, (NOW - 9 * DAY_S, NOW - 9 * DAY_S))
    before = snapshot(queue_dir)
    dry = run_maintenance(store, models_dir, POLICY, dry_run=True, now=NOW)
    assert snapshot(queue_dir) == before
    real = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert dry.dry_run and not real.dry_run
    for action in ("archived", "work_pruned", "checkpoints_pruned", "orphans_pruned"):
        assert getattr(dry, action) == getattr(real, action), action
        assert getattr(dry, action).count == 1, action
    assert dry.archive_files == real.archive_files


def test_an_archived_task_reads_back_and_a_change_to_it_is_written_into_the_archive(
    store: TaskStore, queue_dir: Path
) -> None:
    done = task(days_ago=40, result={"model_id": "model_x", "model_dir": "/m/model_x"})
    store.create(done)
    store.archive_ended(NOW - 30 * DAY_S)
    other = TaskStore(QueueLayout.at(queue_dir))  # another process reads it too
    try:
        assert other.find(done.task_id) == (done, True)
    finally:
        other.close()

    def mark(r: TaskRecord) -> None:
        assert r.result is not None
        r.result.deleted_at = NOW

    record, _ = store.update_anywhere(done.task_id, mark)
    assert store.find(done.task_id)[0].result.deleted_at == NOW  # type: ignore[union-attr]
    with pytest.raises(InvalidStateError, match="archived"):
        store.update_anywhere(done.task_id, lambda r: setattr(r, "status", TaskStatus.QUEUED))
    assert store.find(done.task_id)[0] == record
    with pytest.raises(TaskNotFoundError):
        store.get(done.task_id)  # never a task file again


def test_a_link_planted_as_an_archive_file_is_neither_read_nor_written_through(
    store: TaskStore, models_dir: Path, tmp_path: Path
) -> None:
    old = task(days_ago=40)
    foreign = task(days_ago=41)
    outside = tmp_path / "outside.jsonl"
    outside.write_text(foreign.model_dump_json() + "\n")
    before = outside.read_bytes()
    store.layout.archive_dir.mkdir()
    planted = store.layout.archive_dir / f"{month_of(old)}.jsonl"
    planted.symlink_to(outside)
    store.create(old)
    with pytest.raises(TaskNotFoundError):
        store.find(foreign.task_id)
    report = run_maintenance(store, models_dir, POLICY, now=NOW)
    assert outside.read_bytes() == before
    assert planted.is_file() and not planted.is_symlink()
    assert [json.loads(line)["task_id"] for line in planted.read_text().splitlines()] == [old.task_id]
    assert (store.layout.corrupt_dir / planted.name).is_symlink()
    assert report.archived.task_ids == [old.task_id]


def test_an_archive_folder_that_is_a_link_is_not_followed(
    store: TaskStore, models_dir: Path, tmp_path: Path
) -> None:
    old, foreign = task(days_ago=40), task(days_ago=40)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{month_of(foreign)}.jsonl").write_text(foreign.model_dump_json() + "\n")
    before = snapshot(elsewhere)
    store.layout.archive_dir.symlink_to(elsewhere)
    store.create(old)
    with pytest.raises(TaskNotFoundError):
        store.find(foreign.task_id)
    run_maintenance(store, models_dir, POLICY, now=NOW)
    assert snapshot(elsewhere) == before
    assert not store.layout.archive_dir.is_symlink()
    assert store.find(old.task_id) == (old, True)


def test_lines_of_an_archive_file_that_are_not_records_are_skipped_and_reported(
    store: TaskStore, models_dir: Path
) -> None:
    good = task(days_ago=40)
    store.layout.archive_dir.mkdir()
    month_file = store.layout.archive_dir / f"{month_of(good)}.jsonl"
    month_file.write_bytes(b"not json\n" + good.model_dump_json().encode() + b"\n" + b"{" * (1 << 21) + b"\n")
    assert store.find(good.task_id) == (good, True)
    report = run_maintenance(store, models_dir, POLICY, dry_run=True, now=NOW)
    assert report.problems == [f"archive/{month_file.name}: 2 line(s) that are not task records, skipped"]


# -- disk use and retry candidates -------------------------------------------------------------------


def test_the_report_counts_the_bytes_and_files_of_each_place_and_the_models(
    store: TaskStore, models_dir: Path
) -> None:
    running = task(TaskStatus.RUNNING)
    seed(store, running, log=b"12345", work={"study.journal": b"abc", "checkpoints/s.pt": b"defg"})
    store.layout.corrupt_dir.mkdir()
    (store.layout.corrupt_dir / "x.json").write_bytes(b"zz")
    for model_id, size in (("model_20270101T000000_aaaaaaaa", 10), ("model_20270101T000000_bbbbbbbb", 30)):
        (models_dir / model_id / "reports").mkdir(parents=True)
        (models_dir / model_id / "model.pkl").write_bytes(b"m" * size)
        (models_dir / model_id / "reports" / "summary.md").write_bytes(b"s")
    disk = run_maintenance(store, models_dir, POLICY, dry_run=True, now=NOW).disk
    assert (disk.task_files.files, disk.task_files.bytes) == (1, len(running.model_dump_json()))
    assert (disk.logs.files, disk.logs.bytes) == (1, 5)
    assert (disk.work.files, disk.work.bytes) == (2, 7)
    assert (disk.corrupt.files, disk.corrupt.bytes) == (1, 2)
    assert (disk.archive.files, disk.archive.bytes) == (0, 0)
    assert (disk.models.models, disk.models.files, disk.models.bytes) == (2, 4, 42)
    assert [(m.model_id, m.bytes) for m in disk.models.largest] == [
        ("model_20270101T000000_bbbbbbbb", 31),
        ("model_20270101T000000_aaaaaaaa", 11),
    ]
    assert disk.work.free_bytes is not None and disk.work.free_bytes > 0
    assert disk.models.free_bytes is not None and disk.models.free_bytes > 0


def test_failed_tasks_a_retry_may_get_past_are_listed_as_candidates_newest_first(
    store: TaskStore, models_dir: Path
) -> None:
    lost = task(TaskStatus.FAILED, days_ago=2, error=ErrorKind.WORKER_LOST)
    full = task(TaskStatus.FAILED, days_ago=1, error=ErrorKind.DISK_FULL)
    for r in (lost, full, task(TaskStatus.FAILED, error=ErrorKind.DATA_ERROR), task(TaskStatus.CANCELLED)):
        store.create(r)
    report = run_maintenance(store, models_dir, POLICY, dry_run=True, now=NOW)
    assert [(c.task_id, c.error_kind) for c in report.retry_candidates] == [
        (full.task_id, ErrorKind.DISK_FULL),
        (lost.task_id, ErrorKind.WORKER_LOST),
    ]
    assert report.retry_candidates_total == 2


# -- the Python API ----------------------------------------------------------------------------------


def seeded(queue_dir: Path, *records: TaskRecord) -> None:
    other = TaskStore(QueueLayout.at(queue_dir))
    try:
        for r in records:
            other.create(r)
    finally:
        other.close()


@pytest.mark.anyio
async def test_archived_tasks_are_read_by_status_record_and_listed_after_the_live_ones(
    queue_dir: Path, models_dir: Path
) -> None:
    now = time.time()
    waiting_since_long = task(TaskStatus.QUEUED, days_ago=50, now=now, user_id="u1")
    recent = [task(days_ago=d, now=now, user_id="u1") for d in (1.0, 2.0)]
    old = [task(days_ago=d, now=now, user_id="u2" if d == 41.0 else "u1") for d in (40.0, 41.0, 42.0)]
    seeded(queue_dir, waiting_since_long, *recent, *old)
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        report = await svc.maintain()
        assert sorted(report.archived.task_ids) == sorted(r.task_id for r in old)
        pages, cursor = [], None
        while True:
            page = await svc.list_tasks(limit=2, cursor=cursor)
            pages.append(page)
            cursor = page.next_cursor
            if cursor is None:
                break
        listed = [(v.task_id, v.archived) for p in pages for v in p.tasks]
        assert listed == [
            *((r.task_id, False) for r in [*recent, waiting_since_long]),
            *((r.task_id, True) for r in old),
        ]
        assert {p.total for p in pages} == {6}
        u1_done = await svc.list_tasks(status="completed", user_id="u1")
        assert [v.task_id for v in u1_done.tasks] == [r.task_id for r in [*recent, old[0], old[2]]]
        assert (await svc.list_tasks(status="queued")).total == 1
        view = await svc.status(old[0].task_id)
        assert (view.status, view.archived) == (TaskStatus.COMPLETED, True)
        assert await svc.record(old[0].task_id) == old[0]
        with pytest.raises(InvalidStateError, match="archived"):
            await svc.logs(old[0].task_id)
        with pytest.raises(InvalidStateError, match="already completed"):
            await svc.cancel(old[0].task_id)


@pytest.mark.anyio
async def test_the_owner_runs_maintenance_periodically(queue_dir: Path, models_dir: Path) -> None:
    old = task(days_ago=40, now=time.time())
    seeded(queue_dir, old)
    async with TrainingService(
        queue_dir, models_dir, poll_interval_s=0.05, warm_up=False, maintenance_interval_s=0.05
    ) as svc:
        with anyio.fail_after(30):
            while (queue_dir / f"{old.task_id}.json").exists():
                await anyio.sleep(0.05)
        assert (await svc.status(old.task_id)).archived


@pytest.mark.anyio
async def test_a_failed_periodic_run_is_logged_and_the_next_one_still_comes(
    queue_dir: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[bool] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(True)
        if len(calls) == 1:
            raise RuntimeError("the disk went away")
        return run_maintenance(*args, **kwargs)

    monkeypatch.setattr(service_maintenance, "run_maintenance", flaky)
    caplog.set_level(logging.ERROR, logger="mcp_trainer.service.maintenance")
    async with TrainingService(
        queue_dir, models_dir, poll_interval_s=0.05, warm_up=False, maintenance_interval_s=0.05
    ) as svc:
        with anyio.fail_after(30):
            while len(calls) < 2:
                await anyio.sleep(0.05)
        assert svc.is_owner
    assert any("queue maintenance failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"maintenance_interval_s": -1.0}, "maintenance_interval_s must be a positive number"),
        ({"archive_after_days": float("nan")}, "archive_after_days must be between 0 and 36500"),
        ({"prune_work_after_days": -1.0}, "prune_work_after_days must be between 0 and 36500"),
        ({"archive_after_days": 3.0}, "archive_after_days (3) must be at least prune_work_after_days (7)"),
    ],
)
def test_maintenance_options_out_of_range_are_refused_in_words(
    queue_dir: Path, models_dir: Path, options: dict[str, float], message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        TrainingService(queue_dir, models_dir, **options)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_zero_or_none_turns_the_periodic_run_off(queue_dir: Path, models_dir: Path) -> None:
    assert TrainingService(queue_dir, models_dir, maintenance_interval_s=0).maintenance_interval_s is None
    assert TrainingService(queue_dir, models_dir, maintenance_interval_s=None).maintenance_interval_s is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--maintenance-interval", "5"],
            "--maintenance-interval must be 0 (no periodic maintenance) or at least 60",
        ),
        (["--maintenance-interval", "-1"], "--maintenance-interval must be 0"),
        (["--archive-after-days", "inf"], "--archive-after-days must be between 0 and 36500 (got inf)"),
        (["--prune-work-after-days", "-2"], "--prune-work-after-days must be between 0 and 36500 (got -2)"),
        (
            ["--archive-after-days", "3"],
            "--archive-after-days (3) must be at least --prune-work-after-days (7)",
        ),
    ],
)
def test_the_command_line_refuses_maintenance_options_out_of_range_in_words(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_the_command_lines_maintenance_options_reach_the_server() -> None:
    args = parse_args(
        ["--maintenance-interval", "0", "--archive-after-days", "10", "--prune-work-after-days", "2"]
    )
    assert (args.maintenance_interval, args.archive_after_days, args.prune_work_after_days) == (0, 10, 2)
    assert parse_args([]).maintenance_interval == 6 * 3600


@pytest.mark.anyio
async def test_run_maintenance_archives_and_the_task_tools_still_read_the_archived_task(
    queue_dir: Path, models_dir: Path
) -> None:
    old = task(days_ago=40, now=time.time())
    seeded(queue_dir, old)
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode="legacy") as client:
        dry = await call(client, "run_maintenance", {"dry_run": True})
        assert dry["archived"]["task_ids"] == [old.task_id]
        assert (queue_dir / f"{old.task_id}.json").exists()
        done = await call(client, "run_maintenance", {})
        assert done["archived"]["task_ids"] == [old.task_id]
        status = await call(client, "get_task_status", {"task_id": old.task_id})
        assert (status["status"], status["archived"]) == ("completed", True)
        page = await call(client, "list_training_tasks", {})
        assert [(t["task_id"], t["archived"]) for t in page["tasks"]] == [(old.task_id, True)]
        message = await call_error(client, "get_task_logs", {"task_id": old.task_id})
        assert "was archived" in message
