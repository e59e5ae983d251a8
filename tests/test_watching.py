"""What watchers and completers read from the Python API: digests that change with what they digest and
not with the clock, and ids by prefix, newest first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcp_trainer import TrainingService

pytestmark = pytest.mark.anyio


def tiny(data: Path) -> dict[str, Any]:
    return {"task_type": "svm_classification", "data_source": str(data), "target_column": "label"}


async def test_digests_stay_equal_while_nothing_changes_and_differ_after_a_change(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        idle = await svc.queue_digest()
        assert await svc.queue_digest() == idle
        assert "machine" not in idle and "history" not in idle and "owner_silent_s" not in idle
        task = await svc.submit(tiny(blobs_csv))
        queued = await svc.queue_digest()
        assert queued != idle and queued["counts"]["queued"] == 1
        before = await svc.task_digest(task.task_id)
        assert "elapsed_s" not in before and await svc.task_digest(task.task_id) == before
        await svc.cancel(task.task_id)
        assert (await svc.task_digest(task.task_id))["status"] == "cancelled"
        assert await svc.queue_digest() != queued


async def test_a_log_stamp_is_none_until_the_log_exists_then_follows_its_size(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        task = await svc.submit(tiny(blobs_csv))
        assert await svc.log_stamp(task.task_id) is None
        log = queue_dir / "logs" / f"{task.task_id}.log"
        log.write_text("one\n")
        first = await svc.log_stamp(task.task_id)
        assert first is not None and first[0] == 4
        log.write_text("one\ntwo\n")
        second = await svc.log_stamp(task.task_id)
        assert second is not None and second[0] == 8


async def test_ids_are_offered_by_prefix_newest_first_and_bounded(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        ids = [(await svc.submit(tiny(blobs_csv))).task_id for _ in range(3)]
        assert await svc.task_ids() == ids[::-1]
        assert await svc.task_ids(limit=2) == ids[::-1][:2]
        assert await svc.task_ids(ids[0]) == [ids[0]]
        assert await svc.task_ids("task_1999") == []
        assert await svc.pipeline_ids() == []  # no pipeline, no pipelines directory yet
        assert await svc.model_ids() == []
        for name in ("model_20260101T000000_00000001", "model_20260102T000000_00000002"):
            (models_dir / name).mkdir()
            (models_dir / name / "metadata.json").write_text("{}")
        (models_dir / "model_20260103T000000_00000003").mkdir()  # no metadata: not a saved model
        (models_dir / ".tmp-model_20260104T000000_00000004-1").mkdir()  # being saved
        assert await svc.model_ids() == ["model_20260102T000000_00000002", "model_20260101T000000_00000001"]
        assert await svc.model_ids("model_20260101T") == ["model_20260101T000000_00000001"]
