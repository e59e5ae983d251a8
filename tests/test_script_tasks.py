"""Script tasks through the queue, with real worker processes: progress and metrics in the status while
the script runs, its output directory made a model entry, a failure with its exit code, a cancel that
leaves no process of it alive (grandchildren that left its process group included), and the MCP tool."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from mcp import Client
from mcp_calls import call, call_error
from script_files import alive, read_pids, write_script
from waiting import wait_until

from mcp_trainer import ErrorKind, InvalidInputError, TaskStatus, TrainingService
from mcp_trainer.server import ServerConfig, build_server

pytestmark = pytest.mark.anyio


def waits_for(go: Path) -> str:
    return f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.02)\n"


async def test_a_running_script_shows_its_reported_progress_phase_and_metrics_in_its_status(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    scripts, go = tmp_path / "scripts", tmp_path / "go"
    body = (
        "import os, time\n"
        "from mcp_trainer.report import metric, progress\n"
        "progress(percent=40, phase='training', message='epoch 2 of 5')\n"
        "metric('val_loss', 0.25)\n" + waits_for(go) + "metric('val_loss', 0.125)\n"
    )
    write_script(scripts, "train.py", body)
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05, script_dirs=(scripts,)) as svc:
        task_id = (await svc.submit({"task_type": "script", "script": str(scripts / "train.py")})).task_id

        async def reported() -> bool:
            view = await svc.status(task_id)
            return view.phase == "training" and view.metrics is not None

        await wait_until(reported)
        running = await svc.status(task_id)
        assert running.status is TaskStatus.RUNNING
        assert (running.progress, running.message) == (40.0, "epoch 2 of 5")
        assert running.metrics == {"val_loss": 0.25}
        go.touch()
        done = await svc.wait(task_id, timeout_s=60)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.metrics == {"val_loss": 0.125}
    assert done.outputs == {"exit_code": 0, "artifacts": []}
    assert done.model_id is None  # no output_dir declared: no model entry


async def test_a_scripts_printed_report_lines_work_without_the_helper(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    write_script(
        scripts,
        "plain.sh",
        """
        #!/bin/sh
        echo '@@mcp-trainer {"type": "progress", "percent": 50, "phase": "fitting"}'
        echo '@@mcp-trainer {"type": "metric", "name": "rmse", "value": 1.5}'
        """,
        executable=True,
    )
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05, script_dirs=(scripts,)) as svc:
        task_id = (await svc.submit({"task_type": "script", "command": [str(scripts / "plain.sh")]})).task_id
        done = await svc.wait(task_id, timeout_s=60)
        log = "\n".join(await svc.logs(task_id))
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.metrics == {"rmse": 1.5}
    assert '"name": "rmse"' in log  # its output is in the task's log


async def test_a_scripts_output_dir_becomes_a_model_entry_that_list_models_shows_and_predict_refuses(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    write_script(
        scripts,
        "save.py",
        """
        import os
        from mcp_trainer.report import artifact, metric
        os.makedirs("out/sub", exist_ok=True)
        open("out/weights.bin", "wb").write(b"w" * 100)
        open("out/sub/config.json", "w").write("{}")
        metric("accuracy", 0.9)
        artifact("out/weights.bin")
        """,
    )
    spec = {"task_type": "script", "script": str(scripts / "save.py"), "output_dir": "out"}
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05, script_dirs=(scripts,)) as svc:
        task_id = (await svc.submit(spec, name="my run")).task_id
        done = await svc.wait(task_id, timeout_s=60)
        assert done.status is TaskStatus.COMPLETED, done.error
        assert done.model_id is not None and done.outputs is not None
        assert done.outputs["artifacts"] == [str(scripts / "out" / "weights.bin")]
        listed = await svc.list_models(task_type="script")
        assert [m.model_id for m in listed.models] == [done.model_id]
        assert listed.models[0].metrics == {"accuracy": 0.9} and listed.models[0].name == "my run"
        info = await svc.model_info(done.model_id)
        assert sorted(info.model_files) == ["output/sub/config.json", "output/weights.bin"]
        with pytest.raises(InvalidInputError, match="output directory of a script task"):
            await svc.predict(done.model_id, rows=[{"x": 1}])
    copied = models_dir / done.model_id / "output" / "weights.bin"
    assert copied.read_bytes() == b"w" * 100
    assert (scripts / "out" / "weights.bin").exists()  # the script's own output stays where it wrote it


async def test_a_script_that_fails_fails_its_task_with_the_exit_code_and_is_not_retried(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    write_script(scripts, "bad.py", "import sys\nprint('KeyError: label', file=sys.stderr)\nsys.exit(2)\n")
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05, script_dirs=(scripts,)) as svc:
        task_id = (await svc.submit({"task_type": "script", "script": str(scripts / "bad.py")})).task_id
        done = await svc.wait(task_id, timeout_s=60)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.kind is ErrorKind.SCRIPT_ERROR
    assert "exited with code 2" in done.error.message and "KeyError: label" in done.error.message
    assert done.attempts == 1


GRANDCHILDREN = """
import os, subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
in_group = subprocess.Popen(sleep)
escaped = subprocess.Popen(sleep, start_new_session=True)  # setsid(): out of the worker's group
daemon = subprocess.Popen([sys.executable, "-c", '''
import os, sys, time
if os.fork():
    sys.exit(0)
os.setsid()
if os.fork():
    sys.exit(0)
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\\\\n")
time.sleep(600)
''', "pids"])  # a daemon: double fork and setsid, its parents gone
with open("pids", "a") as f:
    f.write(f"{os.getpid()}\\n{in_group.pid}\\n{escaped.pid}\\n")
daemon.wait()
time.sleep(600)
"""


async def test_cancelling_a_running_script_leaves_no_process_of_it_alive_even_outside_its_group(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    write_script(scripts, "spawns.py", GRANDCHILDREN)
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05, script_dirs=(scripts,)) as svc:
        task_id = (await svc.submit({"task_type": "script", "script": str(scripts / "spawns.py")})).task_id
        await wait_until(lambda: len(read_pids(scripts / "pids")) == 4)
        pids = read_pids(scripts / "pids")
        worker = (await svc.record(task_id)).worker_pid
        assert worker is not None and len(alive(pids)) == 4
        assert {os.getsid(pid) for pid in pids[2:]}.isdisjoint({os.getsid(worker)})  # they did leave
        view = await svc.cancel(task_id)
        assert view.status is TaskStatus.CANCELLED
        assert alive(pids) == []


async def test_a_worker_killed_outright_leaves_no_script_process_alive_either(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    write_script(scripts, "spawns.py", GRANDCHILDREN)
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05, script_dirs=(scripts,)) as svc:
        spec = {"task_type": "script", "script": str(scripts / "spawns.py")}
        task_id = (await svc.submit(spec, max_attempts=1)).task_id
        await wait_until(lambda: len(read_pids(scripts / "pids")) == 4)
        worker = (await svc.record(task_id)).worker_pid
        assert worker is not None
        os.killpg(worker, signal.SIGKILL)  # the worker and its group, with no chance to clean up
        done = await svc.wait(task_id, timeout_s=30)
        assert done.status is TaskStatus.FAILED  # worker_lost, out of attempts
        await wait_until(lambda: alive(read_pids(scripts / "pids")) == [], timeout=10)


async def test_a_queue_run_by_a_server_without_the_opt_in_runs_no_script(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    write_script(scripts, "train.py", "open('ran', 'w').write('yes')\n")
    spec = {"task_type": "script", "script": str(scripts / "train.py")}
    async with TrainingService(queue_dir, models_dir, execute=False, script_dirs=(scripts,)) as submitter:
        task_id = (await submitter.submit(spec)).task_id
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as owner:
        done = await owner.wait(task_id, timeout_s=60)
    assert done.status is TaskStatus.FAILED and done.error is not None
    assert done.error.kind is ErrorKind.SCRIPT_ERROR and "Script tasks are off" in done.error.message
    assert not (scripts / "ran").exists()


async def test_the_script_tool_is_listed_only_with_the_opt_in_and_refuses_paths_outside_it(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    train = write_script(scripts, "train.py", "print('hi')\n")
    off = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(off, mode="legacy") as client:
        assert "submit_script_task" not in {t.name for t in (await client.list_tools()).tools}
        refused = await call_error(client, "submit_script_task", {"script": str(train)})
        assert "submit_script_task" in refused
    on = build_server(
        ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False, script_dirs=(scripts,))
    )
    async with Client(on, mode="legacy") as client:
        queued = await call(client, "submit_script_task", {"script": str(train), "args": ["--epochs", "2"]})
        assert queued["status"] == "queued"
        outside = await call_error(client, "submit_script_task", {"script": str(tmp_path / "x.py")})
        assert "outside the directories scripts may come from" in outside
        bad_env = await call_error(
            client, "submit_script_task", {"script": str(train), "env": {"LD_PRELOAD": "x"}}
        )
        assert "LD_PRELOAD chooses which code a program loads" in bad_env
