"""A script run by its trainer, in this process (no queue): its environment from the grant, a time
limit, stop_training_task's interrupt, processes it leaves behind, and the custodian that ends what a
dead worker could not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from script_files import alive, read_pids, write_script

from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.preflight.script import check_script
from mcp_trainer.records import ErrorKind, TaskRecord
from mcp_trainer.specs.script import ScriptSpec
from mcp_trainer.trainers.base import TaskFailure, WorkerContext
from mcp_trainer.trainers.script import custodian
from mcp_trainer.trainers.script.process import new_marker
from mcp_trainer.trainers.script.trainer import ScriptTrainer


def context(tmp_path: Path, scripts: Path, **fields: Any) -> WorkerContext:
    spec = check_script(ScriptSpec(**fields), [scripts])
    key = tmp_path / "signing-key"
    ModelSigner(key).ensure()
    return WorkerContext(
        record=TaskRecord(task_id="task_20261122T120000_0000abcd", spec=spec, attempts=1),
        models_dir=tmp_path / "models",
        work_dir=tmp_path / "work",
        send=lambda message: None,
        stop_event=threading.Event(),
        signer=ModelSigner(key),
        cpu_share=2,
        gpus=(1,),
        script_dirs=(scripts,),
    )


def test_the_script_sees_only_its_granted_gpus_and_threads_sized_to_its_cores(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    write_script(
        scripts,
        "env.py",
        """
        import json, os
        names = ["CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MCP_TRAINER_TASK_ID"]
        json.dump({n: os.environ.get(n) for n in names}, open("env.json", "w"))
        """,
    )
    ScriptTrainer().run(context(tmp_path, scripts, script=str(scripts / "env.py")))
    seen = json.loads((scripts / "env.json").read_text())
    assert seen == {
        "CUDA_VISIBLE_DEVICES": "1",
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "MCP_TRAINER_TASK_ID": "task_20261122T120000_0000abcd",
    }


def test_a_script_past_its_timeout_is_ended_and_the_task_fails_as_timeout(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    write_script(
        scripts,
        "slow.py",
        """
        import os, time
        open("pids", "w").write(f"{os.getpid()}\\n")
        time.sleep(600)
        """,
    )
    started = time.monotonic()
    with pytest.raises(TaskFailure) as failed:
        ScriptTrainer().run(context(tmp_path, scripts, script=str(scripts / "slow.py"), timeout_s=1.0))
    assert failed.value.kind is ErrorKind.TIMEOUT
    assert "timeout_s=1" in failed.value.message
    assert time.monotonic() - started < 10
    assert read_pids(scripts / "pids") and not alive(read_pids(scripts / "pids"))


def test_stop_training_task_interrupts_the_script_which_keeps_what_it_saved(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    write_script(
        scripts,
        "interruptible.py",
        """
        import os, pathlib, time
        try:
            pathlib.Path("ready").touch()
            time.sleep(600)
        except KeyboardInterrupt:
            os.makedirs("out", exist_ok=True)
            pathlib.Path("out/partial.txt").write_text("saved on interrupt")
        """,
    )
    ctx = context(tmp_path, scripts, script=str(scripts / "interruptible.py"), output_dir="out")

    def finish_once_ready() -> None:
        deadline = time.monotonic() + 30
        while not (scripts / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        ctx.finish_event.set()

    threading.Thread(target=finish_once_ready, daemon=True).start()
    result = ScriptTrainer().run(ctx)
    assert result.model_id == ctx.model_id
    saved = Path(result.outputs["saved_output_dir"]) / "partial.txt"
    assert saved.read_text() == "saved on interrupt"
    assert any("SIGINT" in w for w in ctx.progress.warnings)


def test_processes_a_script_leaves_running_when_it_exits_are_ended_and_the_task_says_so(
    tmp_path: Path,
) -> None:
    scripts = tmp_path / "scripts"
    write_script(
        scripts,
        "leaves.py",
        """
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        open("pids", "w").write(f"{p.pid}\\n")
        """,
    )
    ctx = context(tmp_path, scripts, script=str(scripts / "leaves.py"))
    result = ScriptTrainer().run(ctx)
    assert result.outputs["exit_code"] == 0 and result.model_id is None
    assert not alive(read_pids(scripts / "pids"))
    assert "the script left 1 process(es) running when it exited; they were ended" in ctx.progress.warnings


def test_a_script_that_exits_with_an_error_fails_with_its_code_and_last_stderr_lines(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    write_script(
        scripts,
        "broken.py",
        """
        import sys
        print("loading the data", flush=True)
        print("Traceback: something broke", file=sys.stderr)
        print("ValueError: no column 'label'", file=sys.stderr)
        sys.exit(3)
        """,
    )
    with pytest.raises(TaskFailure) as failed:
        ScriptTrainer().run(context(tmp_path, scripts, script=str(scripts / "broken.py")))
    assert failed.value.kind is ErrorKind.SCRIPT_ERROR
    assert "exited with code 3" in failed.value.message
    assert failed.value.message.endswith("Traceback: something broke\nValueError: no column 'label'")


def test_a_script_killed_by_a_signal_names_the_signal(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    write_script(scripts, "crash.py", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    with pytest.raises(TaskFailure, match=r"killed by SIGSEGV \(signal 11\)"):
        ScriptTrainer().run(context(tmp_path, scripts, script=str(scripts / "crash.py")))


def test_a_declared_output_dir_the_script_did_not_make_fails_the_task(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    write_script(scripts, "lazy.py", "print('nothing written')\n")
    with pytest.raises(TaskFailure, match=r"output_dir .* does not exist") as failed:
        ScriptTrainer().run(context(tmp_path, scripts, script=str(scripts / "lazy.py"), output_dir="out"))
    assert failed.value.kind is ErrorKind.SCRIPT_ERROR


def test_the_custodian_ends_the_marked_processes_once_its_worker_is_gone(tmp_path: Path) -> None:
    marker = new_marker()
    watch_r, watch_w = os.pipe()
    watcher = subprocess.Popen(
        [sys.executable, "-I", "-S", custodian.__file__, marker], stdin=watch_r, start_new_session=True
    )
    os.close(watch_r)
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    marked = subprocess.Popen(
        sleeper, env={**os.environ, custodian.MARKER_VAR: marker}, start_new_session=True
    )
    unmarked = subprocess.Popen(sleeper, start_new_session=True)
    try:
        time.sleep(0.2)  # both are running
        assert marked.poll() is None and watcher.poll() is None
        os.close(watch_w)  # what a worker's death does to the custodian's stdin
        assert watcher.wait(10) == 0
        assert marked.wait(10) == -signal.SIGKILL
        assert unmarked.poll() is None  # only the marked ones
    finally:
        for proc in (marked, unmarked, watcher):
            proc.kill()
            proc.wait(10)
