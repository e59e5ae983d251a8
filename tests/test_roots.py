"""Paths a caller names stay inside the roots the server was given, links included, and bad paths are
refused in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_trainer import InvalidInputError, TrainingService

pytestmark = pytest.mark.anyio


def spec(path: Path | str) -> dict[str, object]:
    return {"task_type": "svm_classification", "data_source": str(path), "target_column": "label"}


async def test_a_data_file_outside_the_data_roots_is_refused_before_it_is_read(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    inside = root / "blobs.csv"
    inside.write_bytes(blobs_csv.read_bytes())
    secret = tmp_path / "creds.csv"
    secret.write_text("user,password\nroot,S3cr3t-1!\n")
    (root / "link.csv").symlink_to(secret)
    async with TrainingService(queue_dir, models_dir, execute=False, data_roots=(root,)) as svc:
        assert (await svc.submit(spec(inside))).task_id
        for path in (secret, root / "link.csv", root / ".." / "creds.csv"):
            with pytest.raises(InvalidInputError) as info:
                await svc.submit({**spec(path), "target_column": "password"})
            assert "outside the directories this server may read" in str(info.value)
            assert "S3cr3t" not in str(info.value)
        with pytest.raises(InvalidInputError, match="outside"):
            await svc.predict("model_20261122T143000_8f3a2c1d", data_source=str(secret))


async def test_a_fine_tunes_model_path_must_be_under_the_model_roots(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, tmp_path: Path
) -> None:
    (tmp_path / "models_ok").mkdir()
    async with TrainingService(
        queue_dir, models_dir, execute=False, model_roots=(tmp_path / "models_ok",)
    ) as svc:
        with pytest.raises(InvalidInputError, match=r"model_path .* outside"):
            await svc.submit(
                {
                    "task_type": "text_classification_finetune",
                    "model_path": "/etc",
                    "data_source": str(blobs_csv),
                }
            )


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/data/a\x00b.csv", "must not contain a NUL character"), ("/" + "x" * 5000 + ".csv", "at most 4096")],
)
async def test_a_path_with_a_nul_byte_or_too_long_is_refused_in_words(
    queue_dir: Path, models_dir: Path, path: str, expected: str
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError, match=expected):
            await svc.submit(spec(path))


async def test_the_servers_own_datasets_are_readable_whatever_the_data_roots_and_the_rest_of_the_queue_is_not(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    async with TrainingService(queue_dir, models_dir, execute=False, data_roots=(root,)) as svc:
        written = queue_dir / "datasets" / "task_20261122T143000_8f3a2c1d" / "train.csv"
        written.parent.mkdir(parents=True)
        written.write_bytes(blobs_csv.read_bytes())
        assert (await svc.submit(spec(written))).task_id
        beside = queue_dir / "blobs.csv"
        beside.write_bytes(blobs_csv.read_bytes())
        for path in (beside, queue_dir / "datasets" / ".." / "blobs.csv"):
            with pytest.raises(InvalidInputError, match="outside the directories this server may read"):
                await svc.submit(spec(path))
