"""Caps on waiting tasks: a submit past `max_queued`, or past `max_queued_per_user` for its user, is
refused in words naming the cap and how many wait, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import uvicorn

import mcp_trainer.server
from mcp_trainer import InvalidInputError, InvalidStateError, TrainingService
from mcp_trainer.cli import main, parse_args
from mcp_trainer.server import ServerConfig

pytestmark = pytest.mark.anyio
IRIS = {"task_type": "svm_classification", "data_source": "sklearn:iris"}


def task_files(queue_dir: Path) -> set[str]:
    return {p.name for p in queue_dir.glob("task_*.json")}


async def test_a_submit_past_max_queued_is_refused_naming_the_cap_and_how_many_wait_and_writes_nothing(
    queue_dir: Path, models_dir: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False, max_queued=2) as svc:
        first = await svc.submit(IRIS)
        await svc.submit(IRIS)
        before = task_files(queue_dir)
        with pytest.raises(InvalidStateError) as info:
            await svc.submit(IRIS, user_id="carol")
        assert "The queue is full: 2 tasks wait" in info.value.message
        assert "at most 2 (max_queued)" in info.value.message
        assert task_files(queue_dir) == before
        await svc.cancel(first.task_id)  # a cancelled task no longer waits: there is room again
        assert (await svc.submit(IRIS)).task_id


async def test_a_user_past_max_queued_per_user_is_refused_while_other_users_still_submit(
    queue_dir: Path, models_dir: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False, max_queued_per_user=1) as svc:
        await svc.submit(IRIS, user_id="alice")
        before = task_files(queue_dir)
        with pytest.raises(InvalidStateError) as info:
            await svc.submit(IRIS, user_id="alice")
        assert "1 task waits for user_id 'alice'" in info.value.message
        assert "at most 1 per user (max_queued_per_user)" in info.value.message
        assert task_files(queue_dir) == before
        assert (await svc.submit(IRIS, user_id="bob")).task_id
        assert (await svc.submit(IRIS)).task_id  # no user_id: only max_queued applies


async def test_concurrent_submits_never_take_the_queue_past_max_queued(
    queue_dir: Path, models_dir: Path
) -> None:
    refused: list[str] = []
    async with TrainingService(queue_dir, models_dir, execute=False, max_queued=3) as svc:

        async def submit() -> None:
            try:
                await svc.submit(IRIS)
            except InvalidStateError as exc:
                refused.append(exc.message)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(submit)
    assert len(task_files(queue_dir)) == 3
    assert len(refused) == 7 and all("The queue is full: 3 tasks wait" in m for m in refused)


async def test_a_retry_with_its_idempotency_key_gets_its_task_back_when_the_queue_is_full(
    queue_dir: Path, models_dir: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False, max_queued=1) as svc:
        first = await svc.submit(IRIS, idempotency_key="k1")
        again = await svc.submit(IRIS, idempotency_key="k1")
        assert again.task_id == first.task_id
        with pytest.raises(InvalidStateError, match="queue is full"):
            await svc.submit(IRIS, idempotency_key="k2")


async def test_get_queue_status_shows_the_caps(queue_dir: Path, models_dir: Path) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False, max_queued_per_user=4) as svc:
        status = await svc.queue_status()
    assert (status.max_queued, status.max_queued_per_user) == (1000, 4)


def test_a_cap_below_one_is_refused_by_the_api_and_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for caps in ({"max_queued": 0}, {"max_queued_per_user": 0}, {"max_queued": 2.5}):
        with pytest.raises(InvalidInputError, match="at least 1"):
            TrainingService(**caps)  # type: ignore[arg-type]
    for flag in ("--max-queued", "--max-queued-per-user"):
        with pytest.raises(SystemExit):
            parse_args([flag, "0"])
        assert "--max-queued and --max-queued-per-user must be at least 1" in capsys.readouterr().err
    args = parse_args(["--max-queued", "50", "--max-queued-per-user", "5"])
    assert (args.max_queued, args.max_queued_per_user) == (50, 5)
    assert (parse_args([]).max_queued, parse_args([]).max_queued_per_user) == (1000, None)


def test_the_command_line_hands_the_caps_and_data_roots_to_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs: list[ServerConfig] = []
    build = mcp_trainer.server.build_server
    monkeypatch.setattr(mcp_trainer.server, "build_server", lambda c, **k: configs.append(c) or build(c, **k))
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: None)
    dirs = ["--queue-dir", str(tmp_path / "queue"), "--models-dir", str(tmp_path / "models")]
    caps = ["--max-queued", "7", "--max-queued-per-user", "2", "--data-root", str(tmp_path)]
    assert main(["--transport", "streamable-http", "--no-auth", *dirs, *caps]) == 0
    (config,) = configs
    assert (config.max_queued, config.max_queued_per_user, config.data_roots) == (7, 2, (tmp_path,))
