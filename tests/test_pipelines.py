"""Pipelines: the checks at submit, the rules that decide what runs next, and pipelines run by real
workers (a diamond with its middle stages in parallel; a failed stage, its dependants cancelled, and a
retry that runs only what did not complete; cancel; a server SIGKILLed mid-pipeline)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import UNGATED
from mcp import Client
from mcp_calls import call, call_error

from mcp_trainer import InvalidInputError, InvalidStateError, TrainingService
from mcp_trainer.engine.pipeline_plan import Skip, Submit, TaskFacts, next_actions
from mcp_trainer.pipeline_records import PipelineRecord, StageState
from mcp_trainer.records import TaskStatus
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.service.templates import template_stages
from mcp_trainer.views.pipelines import PipelineStatusView

pytestmark = pytest.mark.anyio

MakeCsv = Callable[[str, list[str], list[list[object]]], Path]


def tiny(csv: Path, **extra: Any) -> dict[str, Any]:
    base = {"task_type": "svm_classification", "data_source": str(csv), "target_column": "label"}
    return base | {"optimize_hyperparameters": False, "cv_folds": 2} | extra


def diamond(
    a: dict[str, Any], b: dict[str, Any], c: dict[str, Any], d: dict[str, Any]
) -> list[dict[str, Any]]:
    return [
        {"name": "a", "task": a},
        {"name": "b", "task": b, "depends_on": ["a"]},
        {"name": "c", "task": c, "depends_on": ["a"]},
        {"name": "d", "task": d, "depends_on": ["b", "c"]},
    ]


async def ended(svc: TrainingService, pipeline_id: str, timeout: float = 120) -> PipelineStatusView:
    with anyio.fail_after(timeout):
        while (view := await svc.pipeline_status(pipeline_id)).status not in (
            "completed",
            "failed",
            "cancelled",
        ):
            await anyio.sleep(0.05)
    return view


# -- checks at submit ----------------------------------------------------------------------------------


async def test_a_cycle_an_unknown_stage_and_a_bad_reference_are_refused_at_submit_and_nothing_is_written(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    t = tiny(blobs_csv)
    refusals: dict[str, tuple[list[dict[str, Any]], str]] = {
        "cycle": (
            [
                {"name": "a", "task": t, "depends_on": ["c"]},
                {"name": "b", "task": t, "depends_on": ["a"]},
                {"name": "c", "task": t, "depends_on": ["b"]},
            ],
            "The stages form a cycle: a -> c -> b -> a",
        ),
        "cycle through a reference": (
            [
                {"name": "a", "task": {**t, "name": "${b.model_id}"}},
                {"name": "b", "task": t, "depends_on": ["a"]},
            ],
            "cycle",
        ),
        "unknown stage": (
            [{"name": "a", "task": t, "depends_on": ["prep"]}],
            "stage 'a' depends on 'prep', which is not a stage of this pipeline",
        ),
        "reference to an unknown stage": (
            [{"name": "a", "task": {**t, "data_source": "${prep.output_path}"}}],
            "depends on 'prep', which is not a stage",
        ),
        "missing output": (
            [{"name": "a", "task": t}, {"name": "b", "task": {**t, "data_source": "${a.output_path}"}}],
            r"stage 'b' refers to \$\{a.output_path\}, but stage 'a' \(svm_classification\) makes no output "
            "'output_path'",
        ),
        "malformed reference": ([{"name": "a", "task": {**t, "data_source": "${a}"}}], "is not a reference"),
        "itself": ([{"name": "a", "task": t, "depends_on": ["a"]}], "stage 'a' depends on itself"),
        "repeated name": ([{"name": "a", "task": t}, {"name": "a", "task": t}], "must be unique: a repeated"),
        "bad name": ([{"name": "Train SVM", "task": t}], "name"),
        "bad argument": (
            [{"name": "a", "task": {**t, "n_trials": 0}}],
            "stage 'a': Invalid parameters: n_trials must be at least 1",
        ),
        "missing data": ([{"name": "a", "task": {**t, "data_source": "/no/such.csv"}}], "stage 'a': "),
        "owned option": (
            [{"name": "a", "task": {**t, "depends_on": []}}],
            "depends_on cannot be set on a stage's task",
        ),
        "no stages": ([], "stages"),
    }
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        for what, (stages, message) in refusals.items():
            with pytest.raises(InvalidInputError, match=message):
                await svc.submit_pipeline(what, stages)
        assert (await svc.list_pipelines()).total == 0
        assert (await svc.list_tasks()).total == 0


# -- the rules -----------------------------------------------------------------------------------------


def test_the_rules_start_the_roots_then_both_branches_and_skip_what_follows_a_failed_stage() -> None:
    record = PipelineRecord(
        pipeline_id="pipeline_20260101T000000_00000000",
        name="d",
        stages=[
            StageState(name="a", task={}),
            StageState(name="b", task={}, depends_on=["a"]),
            StageState(name="c", task={}, depends_on=["a"], max_attempts=2),
            StageState(name="d", task={}, depends_on=["b", "c"]),
        ],
    )
    facts: dict[str, TaskFacts] = {}
    assert next_actions(record, facts.get) == [Submit("a")]
    record.stage("a").task_ids.append("ta")
    facts["ta"] = TaskFacts(TaskStatus.RUNNING)
    assert next_actions(record, facts.get) == []
    facts["ta"] = TaskFacts(TaskStatus.COMPLETED)
    assert next_actions(record, facts.get) == [Submit("b"), Submit("c")]
    record.stage("b").task_ids.append("tb")
    record.stage("c").task_ids.append("tc")
    facts["tb"], facts["tc"] = TaskFacts(TaskStatus.COMPLETED), TaskFacts(TaskStatus.FAILED)
    assert next_actions(record, facts.get) == [Submit("c")]  # its second attempt
    record.stage("c").task_ids.append("tc2")
    facts["tc2"] = TaskFacts(TaskStatus.FAILED)
    assert next_actions(record, facts.get) == [Skip("d", "stage 'c', which it needs, failed")]


# -- real runs -----------------------------------------------------------------------------------------


async def test_a_diamond_runs_in_order_with_its_two_branches_in_parallel(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, slow_csv: Path
) -> None:
    slow = tiny(slow_csv, optimize_hyperparameters=True, n_trials=4, cpu_cores=1)
    async with TrainingService(queue_dir, models_dir, max_concurrent=3, poll_interval_s=0.05) as svc:
        view = await svc.submit_pipeline("diamond", diamond(tiny(blobs_csv), slow, slow, tiny(blobs_csv)))
        assert view.status in ("queued", "running") and view.stages_total == 4
        assert view.edges == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
        done = await ended(svc, view.pipeline_id)
        assert done.status == "completed" and done.progress == 100.0, done
        runs = {s.name: await svc.record(s.task_id or "") for s in done.stages}
    start = {name: r.started_at or 0.0 for name, r in runs.items()}
    end = {name: r.finished_at or 0.0 for name, r in runs.items()}
    assert end["a"] <= min(start["b"], start["c"]) and max(end["b"], end["c"]) <= start["d"]
    assert start["b"] < end["c"] and start["c"] < end["b"], "b and c did not run at the same time"
    assert all(r.pipeline_id == done.pipeline_id and r.stage == name for name, r in runs.items())
    assert runs["d"].depends_on == [runs["b"].task_id, runs["c"].task_id]
    stage_d = next(s for s in done.stages if s.name == "d")
    assert stage_d.outputs is not None and stage_d.outputs["model_id"] == runs["d"].result.model_id  # type: ignore[union-attr]


async def test_a_failed_stage_cancels_its_dependants_and_retry_runs_only_what_did_not_complete(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, make_csv: MakeCsv
) -> None:
    two_classes = [[i, i % 2] for i in range(40)]
    shifting = make_csv("shifting.csv", ["x", "label"], two_classes)
    fragile = tiny(shifting, scoring="roc_auc")  # a three-class target cannot be scored by roc_auc
    async with TrainingService(queue_dir, models_dir, max_concurrent=3, poll_interval_s=0.05) as svc:
        view = await svc.submit_pipeline(
            "fragile", diamond(tiny(blobs_csv), fragile, tiny(blobs_csv), tiny(blobs_csv))
        )
        make_csv("shifting.csv", ["x", "label"], [[i, i % 3] for i in range(40)])
        failed = await ended(svc, view.pipeline_id)
        stages = {s.name: s for s in failed.stages}
        assert failed.status == "failed", failed
        assert [stages[n].status for n in "abcd"] == ["completed", "failed", "completed", "cancelled"]
        # Refused when its task was submitted, or failed when it ran: either way the reason is shown.
        assert "roc_auc" in (stages["b"].error or stages["b"].note or "")
        assert stages["d"].task_id is None and stages["d"].note == "stage 'b', which it needs, failed"
        with pytest.raises(InvalidStateError, match="already failed"):
            await svc.cancel_pipeline(view.pipeline_id)

        make_csv("shifting.csv", ["x", "label"], two_classes)
        again = await svc.retry_pipeline(view.pipeline_id)
        assert again.retries == 1
        done = await ended(svc, view.pipeline_id)
        assert done.status == "completed", done
        after = {s.name: s for s in done.stages}
        assert after["a"].task_id == stages["a"].task_id and after["c"].task_id == stages["c"].task_id
        assert after["b"].task_id != stages["b"].task_id
        tasks = (await svc.list_tasks(limit=50)).tasks
        assert len(tasks) == 5  # a, c, d once; b twice
        with pytest.raises(InvalidStateError, match="only a failed or cancelled one"):
            await svc.retry_pipeline(view.pipeline_id)


async def test_cancel_pipeline_cancels_the_running_stage_and_the_stages_not_started(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, slow_csv: Path
) -> None:
    slow = tiny(slow_csv, optimize_hyperparameters=True, n_trials=200)
    async with TrainingService(queue_dir, models_dir, max_concurrent=2, poll_interval_s=0.05) as svc:
        view = await svc.submit_pipeline(
            "long", diamond(slow, tiny(blobs_csv), tiny(blobs_csv), tiny(blobs_csv))
        )
        with anyio.fail_after(60):
            while (await svc.pipeline_status(view.pipeline_id)).stages[0].status != "running":
                await anyio.sleep(0.05)
        cancelled = await svc.cancel_pipeline(view.pipeline_id)
        assert cancelled.status == "cancelled" and cancelled.cancel_requested
        assert [s.status for s in cancelled.stages] == ["cancelled"] * 4
        assert (await svc.status(cancelled.stages[0].task_id or "")).status is TaskStatus.CANCELLED
        assert all(s.task_id is None and s.note == "the pipeline was cancelled" for s in cancelled.stages[1:])
        assert (await svc.list_tasks()).total == 1


def start_server(queue_dir: Path, models_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_trainer",
            *("--queue-dir", str(queue_dir), "--models-dir", str(models_dir)),
            *("--max-concurrent", "2", *UNGATED),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def reap(server: subprocess.Popen[bytes]) -> None:
    server.wait(10)
    if server.stdin is not None:
        server.stdin.close()


async def test_a_server_sigkilled_mid_pipeline_loses_nothing_and_reruns_nothing_that_completed(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, slow_csv: Path
) -> None:
    slow = tiny(slow_csv, optimize_hyperparameters=True, n_trials=6, cpu_cores=1)
    server = start_server(queue_dir, models_dir)
    try:
        async with TrainingService(queue_dir, models_dir, execute=False) as svc:
            view = await svc.submit_pipeline(
                "survivor", diamond(tiny(blobs_csv), slow, slow, tiny(blobs_csv))
            )
            with anyio.fail_after(60):
                while "running" not in [(await svc.pipeline_status(view.pipeline_id)).stages[1].status]:
                    await anyio.sleep(0.02)
            os.kill(server.pid, signal.SIGKILL)
            reap(server)
            server = start_server(queue_dir, models_dir)
            done = await ended(svc, view.pipeline_id, timeout=180)
            assert done.status == "completed", done
            record = await svc.record(done.stages[0].task_id or "")
            assert (
                record.attempts == 1 and record.recoveries == 0
            )  # "a" completed before the kill: never again
            tasks = (await svc.list_tasks(limit=50)).tasks
            stages = sorted([(await svc.record(t.task_id)).stage or "" for t in tasks])
            assert stages == ["a", "b", "c", "d"]  # one task per stage
    finally:
        server.kill()
        reap(server)


# -- through MCP ---------------------------------------------------------------------------------------


async def test_the_pipeline_tools_submit_read_list_and_refuse_in_sentences(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode="legacy") as client:
        stages = [
            {"name": "a", "task": tiny(blobs_csv)},
            {"name": "b", "task": tiny(blobs_csv), "depends_on": ["a"]},
        ]
        made = await call(client, "submit_pipeline", {"name": "two", "stages": stages, "user_id": "ann"})
        assert made["status"] == "queued" and [s["name"] for s in made["stages"]] == ["a", "b"]
        assert made["stages"][0]["status"] == "queued" and made["stages"][0]["task_id"]  # submitted at once
        assert made["stages"][1]["status"] == "pending" and made["edges"] == [["a", "b"]]
        read = await call(client, "get_pipeline_status", {"pipeline_id": made["pipeline_id"]})
        assert read["pipeline_id"] == made["pipeline_id"]
        page = await call(client, "list_pipelines", {"user_id": "ann"})
        assert page["total"] == 1 and page["pipelines"][0]["stages_total"] == 2
        assert (await call(client, "list_pipelines", {"user_id": "bob"}))["total"] == 0
        listed = await call(client, "list_pipeline_templates")
        assert {t["name"] for t in listed["templates"]} >= {"compare_families", "train_then_evaluate"}

        both = {"name": "x", "stages": stages, "template": "train_then_evaluate"}
        assert "either stages or a template" in await call_error(client, "submit_pipeline", both)
        unknown = {"name": "x", "template": "compare_familes", "template_arguments": {}}
        assert "did you mean 'compare_families'" in await call_error(client, "submit_pipeline", unknown)
        bad = {
            "name": "x",
            "template": "train_then_evaluate",
            "template_arguments": {"task_type": "svm_classification"},
        }
        assert "template_arguments of 'train_then_evaluate'" in await call_error(
            client, "submit_pipeline", bad
        )
        cyclic = [{"name": "a", "task": tiny(blobs_csv), "depends_on": ["a"]}]
        assert "depends on itself" in await call_error(
            client, "submit_pipeline", {"name": "x", "stages": cyclic}
        )
        missing = {"pipeline_id": "pipeline_20200101T000000_00000000"}
        assert "No pipeline" in await call_error(client, "get_pipeline_status", missing)
        assert (await call(client, "list_pipelines"))["total"] == 1


async def test_a_stage_the_full_queue_cannot_take_yet_says_so_and_is_queued_once_there_is_room(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False, max_queued=1) as svc:
        view = await svc.submit_pipeline(
            "crowded", [{"name": "a", "task": tiny(blobs_csv)}, {"name": "b", "task": tiny(blobs_csv)}]
        )
        first, second = view.stages
        assert first.status == "queued" and second.status == "pending" and second.task_id is None
        assert second.note is not None and "could not be queued yet" in second.note and "queue" in second.note
        await svc.cancel(first.task_id or "")
        await svc.advance_pipelines()
        second = (await svc.pipeline_status(view.pipeline_id)).stages[1]
        assert second.status == "queued" and second.task_id is not None and second.note is None


async def test_the_compare_families_template_splits_trains_in_parallel_and_names_the_best_on_held_out_rows(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    arguments = {
        "data_source": str(blobs_csv),
        "target_column": "label",
        "task_types": ["svm_classification", "random_forest_classification"],
        "test_size": 0.25,
        "n_trials": 2,
    }
    async with TrainingService(queue_dir, models_dir, max_concurrent=3, poll_interval_s=0.05) as svc:
        view = await svc.submit_pipeline(
            "compare", template_stages("compare_families", arguments), template="compare_families"
        )
        assert [s.name for s in view.stages] == [
            "prep",
            "train_svm_classification",
            "train_random_forest_classification",
            "evaluate",
        ]
        done = await ended(svc, view.pipeline_id, timeout=240)
        assert done.status == "completed", done
        stages = {s.name: s for s in done.stages}
        prep, evaluate = stages["prep"].outputs or {}, stages["evaluate"].outputs or {}
        assert prep["n_test_rows"] == 30 and prep["n_train_rows"] == 90
        trained = {stages[n].outputs["model_id"] for n in stages if n.startswith("train_")}  # type: ignore[index]
        assert evaluate["best_model_id"] in trained
        assert {row["model_id"] for row in evaluate["comparison"]} == trained
        assert all(row["n_rows"] == 30 for row in evaluate["comparison"])


def test_the_fine_tune_template_cleans_up_the_fine_tunes_checkpoints_after_it() -> None:
    stages = template_stages(
        "finetune_then_clean_up", {"finetune": {"task_type": "text_classification_finetune"}}
    )
    assert stages[1] == {
        "name": "cleanup",
        "task": {"task_type": "cleanup", "task_ids": ["${finetune.task_id}"], "remove": ["checkpoints"]},
    }
