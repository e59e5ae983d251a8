"""The command line's client commands: submit a pipeline or a task from a JSON file, read, list, cancel and
retry, on the queue directory, with JSON on stdout and refusals on stderr (exit status 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_trainer.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_a_pipeline_file_is_submitted_read_listed_and_cancelled_from_the_command_line(
    tmp_path: Path, queue_dir: Path, blobs_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = {"task_type": "svm_classification", "data_source": str(blobs_csv), "target_column": "label"}
    file = tmp_path / "pipeline.json"
    file.write_text(json.dumps({"name": "cli", "stages": [{"name": "a", "task": task}]}))
    where = ("--queue-dir", str(queue_dir), "--models-dir", str(tmp_path / "models"))
    code, made, err = run(capsys, *where, "submit", str(file))
    assert code == 0 and made["status"] == "queued" and "no server runs the queue" in err
    pipeline_id = str(made["pipeline_id"])
    code, read, _ = run(capsys, *where, "status", pipeline_id)
    assert code == 0 and read["pipeline_id"] == pipeline_id
    code, listed, _ = run(capsys, *where, "pipelines")
    assert code == 0 and listed["total"] == 1
    code, cancelled, _ = run(capsys, *where, "cancel", pipeline_id)
    assert code == 0 and cancelled["status"] == "cancelled"

    file.write_text(json.dumps(task | {"priority": "high"}))
    code, submitted, _ = run(capsys, *where, "submit", str(file))
    assert code == 0 and submitted["priority"] == "high"
    code, tasks, _ = run(capsys, *where, "tasks", "--status", "queued")
    assert code == 0 and tasks["total"] == 1


def test_the_command_line_refuses_in_sentences_with_exit_status_2(
    tmp_path: Path, queue_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ("--queue-dir", str(queue_dir), "--models-dir", str(tmp_path / "models"))
    bad = tmp_path / "bad.json"
    cases = {
        "[1]": "holds a JSON list, not an object",
        "{not json": "is not JSON",
        json.dumps({"name": "x", "stages": [], "extra": 1}): "Unknown key(s) in the pipeline file: extra",
        json.dumps({"template": "nope"}): "Unknown template 'nope'",
        json.dumps({"task_type": "svm_classification", "priority": "urgent"}): "priority must be one of",
    }
    for text, message in cases.items():
        bad.write_text(text)
        code, out, err = run(capsys, *where, "submit", str(bad))
        assert (code, out) == (2, {}) and message in err, (text, err)
    code, _, err = run(capsys, *where, "status", "task_1")
    assert code == 2 and "is not a task id" in err and "Traceback" not in err


def test_a_script_task_is_submitted_from_the_command_line_only_with_the_servers_opt_in(
    tmp_path: Path, queue_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "train.py").write_text("print('hello')\n")
    file = tmp_path / "task.json"
    file.write_text(json.dumps({"task_type": "script", "script": str(scripts / "train.py")}))
    where = ("--queue-dir", str(queue_dir), "--models-dir", str(tmp_path / "models"))
    code, _, err = run(capsys, *where, "submit", str(file))
    assert code == 2 and "--allow-scripts-from" in err
    code, made, _ = run(capsys, *where, "--allow-scripts-from", str(scripts), "submit", str(file))
    assert code == 0 and made["task_type"] == "script" and made["status"] == "queued"
