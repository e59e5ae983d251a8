"""The MCP tasks extension (io.modelcontextprotocol/tasks) backed by the queue: a submit answered with a
task, tasks/get polled to the final result, tasks/cancel ending the worker, a handle that outlives the
server process, the spec's errors, and no change for clients that do not speak it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from conftest import UNGATED
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from tasks_client import (
    TASKS,
    CreateTaskResult,
    TasksClient,
    cancel_task,
    get_task,
    submit_as_task,
    update_task,
    wait_for_end,
)
from waiting import wait_until

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.engine.processes import process_group_alive
from mcp_trainer.engine.retries import retry_or_fail
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import ErrorKind, Progress, TaskError, TaskRecord
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.server.task_handles import task_handle
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.views.tasks import TaskStatusView

pytestmark = pytest.mark.anyio

INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
MISSING_CAPABILITY = -32021


def quick(data: Path, **extra: Any) -> dict[str, Any]:
    return {
        "task_type": "svm_classification",
        "data_source": str(data),
        "target_column": "label",
        "n_trials": 2,
        "cv_folds": 2,
        **extra,
    }


def slow(data: Path) -> dict[str, Any]:
    return quick(data, n_trials=1000, cv_folds=5)


@pytest.fixture
async def client(queue_dir: Path, models_dir: Path) -> AsyncIterator[Client]:
    """A client on the 2026-07-28 protocol that speaks the extension."""
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, max_concurrent=1))
    async with Client(server, extensions=[TasksClient()]) as c:
        yield c


def test_a_handle_says_in_words_where_a_running_retrying_or_dependent_task_stands() -> None:
    spec = TabularSpec(task_type="svm_classification", data_source="/d.csv", target_column="y")

    def handle(record: TaskRecord) -> dict[str, Any]:
        return task_handle(record, TaskStatusView.of(record, now=record.created_at + 60))

    running = TaskRecord(task_id=new_task_id(), spec=spec)
    running.transition(TaskStatus.RUNNING, now=running.created_at + 1)
    running.progress = Progress(
        percent=40, phase="searching", trial=4, n_trials=10, best_score=0.93456, eta_s=12.2
    )
    running.progress.updated_at = running.created_at + 30
    shown = handle(running)
    assert shown["status"] == "working" and shown["pollIntervalMs"] == 2000
    assert shown["statusMessage"] == "Running: searching, 40%, trial 4/10, best 0.9346, ~12 s left."
    assert shown["lastUpdatedAt"] > shown["createdAt"] and "result" not in shown

    retrying = TaskRecord(task_id=new_task_id(), spec=spec, max_attempts=3)
    retrying.transition(TaskStatus.RUNNING)
    retrying.attempts = 1
    retrying.error = TaskError(kind=ErrorKind.WORKER_LOST, message="The worker died.")
    retry_or_fail(retrying, "worker_lost")
    shown = handle(retrying)
    assert shown["status"] == "working" and shown["pollIntervalMs"] == 5000
    assert shown["statusMessage"].startswith(
        "Retrying: attempt 1 of 3 failed (worker_lost: The worker died.)."
    )

    dependent = TaskRecord(task_id=new_task_id(), spec=spec)
    dependent.error = TaskError(kind=ErrorKind.DEPENDENCY_FAILED, message="Task task_x failed.")
    dependent.transition(TaskStatus.CANCELLED)
    shown = handle(dependent)
    assert shown["status"] == "cancelled" and shown["statusMessage"] == "Cancelled: Task task_x failed."
    assert "result" not in shown and "pollIntervalMs" not in shown


async def test_the_extension_is_advertised_on_the_new_protocol_and_not_on_the_handshake(
    queue_dir: Path, models_dir: Path
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server) as modern:
        assert (modern.server_capabilities.extensions or {})[TASKS] == {}
    async with Client(server, mode="legacy") as legacy:
        assert TASKS not in (legacy.server_capabilities.extensions or {})


async def test_a_submit_is_answered_with_a_task_of_the_queue_polled_to_its_final_status(
    client: Client, queue_dir: Path, blobs_csv: Path
) -> None:
    created = await submit_as_task(client, "submit_training_task", quick(blobs_csv))

    # The handle is the queue's task, written before the answer: tasks/get resolves at once.
    assert created.task_id.startswith("task_") and (queue_dir / f"{created.task_id}.json").is_file()
    assert created.status == "working" and created.ttl_ms is None
    assert created.poll_interval_ms in (2000, 5000) and created.status_message
    assert (await get_task(client.session, created.task_id)).task_id == created.task_id

    done = await wait_for_end(client.session, created.task_id)

    assert done.status == "completed" and done.error is None
    assert done.status_message is not None and done.status_message.startswith("Completed: model model_")
    assert done.created_at == created.created_at and done.last_updated_at >= done.created_at
    assert done.poll_interval_ms is None  # nothing more to poll for
    # The result is what the call would have answered had it waited: the task's final status.
    assert done.result is not None and done.result.get("isError") is not True
    status = done.result["structuredContent"]
    assert status["task_id"] == created.task_id and status["status"] == "completed"
    assert status["model_id"] and status["metrics"]
    assert json.loads(done.result["content"][0]["text"]) == status
    same = await client.call_tool("get_task_status", {"task_id": created.task_id})
    assert same.structured_content is not None and same.structured_content["model_id"] == status["model_id"]


async def test_a_client_that_resolves_tasks_itself_gets_the_final_status_from_call_tool(
    client: Client, blobs_csv: Path
) -> None:
    result = await client.call_tool("submit_training_task", quick(blobs_csv))

    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["status"] == "completed"
    assert result.structured_content["model_id"]


async def test_tasks_cancel_stops_a_running_task_and_its_worker_processes(
    client: Client, queue_dir: Path, slow_csv: Path
) -> None:
    created = await submit_as_task(client, "submit_training_task", slow(slow_csv))
    task_file = queue_dir / f"{created.task_id}.json"

    def worker() -> int | None:
        record = json.loads(task_file.read_text())
        pid: int | None = record.get("worker_pid") if record["status"] == "running" else None
        return pid

    async def searching() -> bool:
        running = await get_task(client.session, created.task_id)
        return bool(running.status_message and "searching" in running.status_message and worker())

    await wait_until(searching)
    running = await get_task(client.session, created.task_id)
    assert running.status == "working" and running.poll_interval_ms == 2000
    pid = worker()
    assert pid is not None and process_group_alive(pid)

    assert await cancel_task(client.session, created.task_id) == {"resultType": "complete"}

    cancelled = await get_task(client.session, created.task_id)
    assert cancelled.status == "cancelled" and cancelled.result is None and cancelled.error is None
    assert not process_group_alive(pid)
    assert json.loads(task_file.read_text())["status"] == "cancelled"


async def test_unknown_ids_and_a_cancel_of_an_ended_task_are_invalid_params_errors_that_change_nothing(
    client: Client, queue_dir: Path, blobs_csv: Path
) -> None:
    session = client.session
    unknown = new_task_id()
    for call in (get_task, cancel_task):
        with pytest.raises(MCPError) as missing:
            await call(session, unknown)
        assert missing.value.error.code == INVALID_PARAMS
        assert "task not found" in missing.value.error.message and unknown in missing.value.error.message
        with pytest.raises(MCPError) as malformed:
            await call(session, "nope")
        assert malformed.value.error.code == INVALID_PARAMS
        assert "'nope' is not a task id" in malformed.value.error.message
        with pytest.raises(MCPError) as absent:
            await call(session, None)
        assert absent.value.error.code == INVALID_PARAMS and "params.taskId" in absent.value.error.message
    with pytest.raises(MCPError) as no_pipeline:
        await get_task(session, "pipeline_20260101T000000_00000000")
    assert no_pipeline.value.error.code == INVALID_PARAMS

    done = await wait_for_end(
        session, (await submit_as_task(client, "submit_training_task", quick(blobs_csv))).task_id
    )
    assert done.status == "completed"
    with pytest.raises(MCPError) as ended:
        await cancel_task(session, done.task_id)
    assert ended.value.error.code == INVALID_PARAMS
    assert (
        "the task has ended" in ended.value.error.message and "already completed" in ended.value.error.message
    )
    assert (await get_task(session, done.task_id)).status == "completed"


async def test_tasks_update_acknowledges_a_known_task_and_refuses_an_unknown_one(
    client: Client, blobs_csv: Path
) -> None:
    created = await submit_as_task(client, "submit_training_task", quick(blobs_csv))
    assert await update_task(client.session, created.task_id, {}) == {"resultType": "complete"}
    with pytest.raises(MCPError) as unknown:
        await update_task(client.session, new_task_id(), {})
    assert unknown.value.error.code == INVALID_PARAMS and "task not found" in unknown.value.error.message
    with pytest.raises(MCPError) as shapeless:
        await update_task(client.session, created.task_id, "yes")
    assert shapeless.value.error.code == INVALID_PARAMS and "inputResponses" in shapeless.value.error.message


async def test_a_failed_task_completes_with_an_error_result_and_retry_task_answers_with_its_task(
    queue_dir: Path, models_dir: Path
) -> None:
    spec = TabularSpec(task_type="svm_classification", data_source="/d.csv", target_column="y")
    record = TaskRecord(task_id=new_task_id(), spec=spec, max_attempts=1, attempt_budget=1)
    record.transition(TaskStatus.RUNNING)
    record.attempts = 1
    record.error = TaskError(
        kind=ErrorKind.DATA_ERROR, message="Column y is constant.", hint="Pick a target."
    )
    record.transition(TaskStatus.FAILED)
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        svc._parts().store.create(record)

    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, extensions=[TasksClient()]) as client:
        failed = await get_task(client.session, record.task_id)

        # A training failure is a tool-level error: completed, with an isError result (spec: "failed"
        # is for JSON-RPC errors only); its message says "failed" in words.
        assert failed.status == "completed" and failed.error is None
        assert failed.status_message == "Failed (data_error): Column y is constant. Pick a target."
        assert failed.result is not None and failed.result["isError"] is True
        assert failed.result["content"][0]["text"] == failed.status_message
        assert failed.result["structuredContent"]["error"]["kind"] == "data_error"

        again = await submit_as_task(client, "retry_task", {"task_id": record.task_id})
        assert again.task_id == record.task_id and again.status == "working"
        assert again.status_message == "Queued: next to start."  # this server runs nothing


async def test_a_pipeline_is_answered_with_its_own_task_polled_to_completion(
    client: Client, blobs_csv: Path
) -> None:
    stage = quick(blobs_csv, optimize_hyperparameters=False)
    created = await submit_as_task(
        client, "submit_pipeline", {"name": "one", "stages": [{"name": "train", "task": stage}]}
    )
    assert created.task_id.startswith("pipeline_") and created.status == "working"

    done = await wait_for_end(client.session, created.task_id)

    assert done.status == "completed" and done.result is not None
    pipeline = done.result["structuredContent"]
    assert pipeline["pipeline_id"] == created.task_id and pipeline["status"] == "completed"
    assert pipeline["stages"][0]["status"] == "completed"


async def test_clients_that_do_not_speak_the_extension_see_the_usual_answers_and_no_methods(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    for mode in ("legacy", "auto"):
        async with Client(server, mode=mode) as plain:  # type: ignore[arg-type]
            tools = {t.name for t in (await plain.list_tools()).tools}
            assert "submit_training_task" in tools and not any(t.startswith("tasks") for t in tools)
            answer = await plain.call_tool("submit_training_task", quick(blobs_csv))
            assert not answer.is_error and answer.structured_content is not None
            task_id = answer.structured_content["task_id"]
            assert answer.structured_content["status"] == "queued"  # the submit's answer, not a task
            with pytest.raises(MCPError) as refused:
                await get_task(plain.session, task_id)
            expected = METHOD_NOT_FOUND if mode == "legacy" else MISSING_CAPABILITY
            assert refused.value.error.code == expected
            if mode == "auto":
                assert refused.value.error.data == {"requiredCapabilities": {"extensions": {TASKS: {}}}}
    # Speaking the extension changes nothing for a tool that answers within the call, nor for a refusal.
    async with Client(server, extensions=[TasksClient()]) as speaking:
        listed = await speaking.session.call_tool("get_queue_status", {}, allow_claimed=True)
        assert not isinstance(listed, CreateTaskResult) and not listed.is_error
        refused_submit = await speaking.session.call_tool(
            "submit_training_task", quick(blobs_csv, n_trials=0), allow_claimed=True
        )
        assert not isinstance(refused_submit, CreateTaskResult) and refused_submit.is_error


def stdio_server(queue_dir: Path, models_dir: Path, *extra: str) -> StdioServerParameters:
    args = ["-m", "mcp_trainer", "--queue-dir", str(queue_dir), "--models-dir", str(models_dir)]
    return StdioServerParameters(command=sys.executable, args=[*args, *UNGATED, *extra])


async def test_a_task_made_before_a_restart_is_answered_and_completed_by_the_next_server_process(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    # The first server process queues the task without running it, and exits.
    async with Client(
        stdio_server(queue_dir, models_dir, "--no-execute"), extensions=[TasksClient()]
    ) as first:
        created = await submit_as_task(first, "submit_training_task", quick(blobs_csv))
        assert (await get_task(first.session, created.task_id)).status == "working"

    # A new server process on the same queue knows the task, runs it, and gives its result.
    async with Client(stdio_server(queue_dir, models_dir), extensions=[TasksClient()]) as second:
        again = await get_task(second.session, created.task_id)
        assert again.created_at == created.created_at
        done = await wait_for_end(second.session, created.task_id)
        assert done.status == "completed" and done.result is not None
        assert done.result["structuredContent"]["model_id"]


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real server over streamable HTTP that runs nothing (`--no-execute`): its URL and its token."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    queue = tmp_path / "queue"
    command = [sys.executable, "-m", "mcp_trainer", "--transport", "streamable-http", "--port", str(port)]
    command += ["--queue-dir", str(queue), "--models-dir", str(tmp_path / "models"), "--no-execute"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp", (queue / ".http-token").read_text().strip()
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_wire_by_hand_over_http_submit_as_a_task_get_cancel_and_the_spec_errors(
    http_server: tuple[str, str], tmp_path: Path, blobs_csv: Path
) -> None:
    url, token = http_server
    version = "2026-07-28"
    declared = {"extensions": {TASKS: {}}}

    async def rpc(method: str, params: dict[str, Any], name: str | None, capabilities: Any = declared) -> Any:
        meta = {
            "io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
            "io.modelcontextprotocol/clientInfo": {"name": "by-hand", "version": "1"},
        }
        headers = {
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token}",
            "MCP-Protocol-Version": version,
            "Mcp-Method": method,
            **({"Mcp-Name": name} if name else {}),
        }
        body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {**params, "_meta": meta}}
        async with httpx2.AsyncClient(timeout=30) as http:
            answer = (await http.post(url, json=body, headers=headers)).json()
        assert answer["id"] == 7
        return answer

    submit = {"name": "submit_training_task", "arguments": quick(blobs_csv)}
    plain = (await rpc("tools/call", submit, "submit_training_task", {}))["result"]
    assert plain["resultType"] == "complete" and plain["structuredContent"]["status"] == "queued"

    created = (await rpc("tools/call", submit, "submit_training_task"))["result"]
    task_id = created["taskId"]
    assert created["resultType"] == "task" and created["status"] == "working"
    assert created["statusMessage"] == "Queued: 1 task(s) start before it."
    assert set(created) >= {"createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"}

    got = (await rpc("tasks/get", {"taskId": task_id}, task_id))["result"]
    assert got["resultType"] == "complete" and got["taskId"] == task_id and got["status"] == "working"

    assert (await rpc("tasks/cancel", {"taskId": task_id}, task_id))["result"]["resultType"] == "complete"
    assert (await rpc("tasks/get", {"taskId": task_id}, task_id))["result"]["status"] == "cancelled"
    again = (await rpc("tasks/cancel", {"taskId": task_id}, task_id))["error"]
    assert again["code"] == INVALID_PARAMS and "already cancelled" in again["message"]
    for removed in ("tasks/result", "tasks/list"):  # not in this revision of the extension
        assert (await rpc(removed, {"taskId": task_id}, task_id))["error"]["code"] == METHOD_NOT_FOUND
    undeclared = (await rpc("tasks/get", {"taskId": task_id}, task_id, {}))["error"]
    assert undeclared["code"] == MISSING_CAPABILITY

    audit = [json.loads(line) for line in (tmp_path / "queue" / "audit.jsonl").read_text().splitlines()]
    cancels = [e for e in audit if e["call"] == "cancel"]
    assert [e["outcome"] == "ok" for e in cancels] == [True, False]  # the second: already cancelled
    assert {e["actor"]["tool"] for e in cancels} == {"tasks/cancel"}
    assert all(e["actor"]["via"] == "http" and e["actor"]["client"] == "by-hand/1" for e in cancels)
