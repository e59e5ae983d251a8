"""A script task's spec and where its files may come from: refused without the server's opt-in, outside
the allowed directories (links followed), with an environment a caller may not set, and accepted with
every path made absolute inside them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import uvicorn
from script_files import write_script

import mcp_trainer.server
from mcp_trainer import InvalidInputError, TrainingService
from mcp_trainer.cli import main, parse_args
from mcp_trainer.preflight.script import check_script
from mcp_trainer.server import ServerConfig
from mcp_trainer.specs import parse_spec
from mcp_trainer.specs.script import ScriptSpec

pytestmark = pytest.mark.anyio


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    directory = tmp_path / "scripts"
    write_script(directory, "train.py", "print('hi')\n")
    return directory.resolve()


def spec(**fields: object) -> ScriptSpec:
    parsed = parse_spec({"task_type": "script", **fields})
    assert isinstance(parsed, ScriptSpec)
    return parsed


async def test_a_script_task_is_refused_when_the_server_was_not_started_with_the_opt_in(
    queue_dir: Path, models_dir: Path, scripts: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError, match="Script tasks are off") as refused:
            await svc.submit({"task_type": "script", "script": str(scripts / "train.py")})
        assert "--allow-scripts-from" in str(refused.value)
        assert (await svc.list_tasks()).total == 0  # nothing was queued


async def test_a_script_outside_the_allowed_directories_is_refused_and_nothing_is_queued(
    queue_dir: Path, models_dir: Path, scripts: Path, tmp_path: Path
) -> None:
    elsewhere = write_script(tmp_path / "elsewhere", "evil.py", "print('no')\n")
    async with TrainingService(queue_dir, models_dir, execute=False, script_dirs=(scripts,)) as svc:
        with pytest.raises(InvalidInputError, match="outside the directories scripts may come from"):
            await svc.submit({"task_type": "script", "script": str(elsewhere)})
        assert (await svc.list_tasks()).total == 0


def test_a_link_inside_an_allowed_directory_that_points_out_of_it_is_refused(
    scripts: Path, tmp_path: Path
) -> None:
    outside = write_script(tmp_path / "elsewhere", "evil.py", "print('no')\n")
    (scripts / "innocent.py").symlink_to(outside)
    with pytest.raises(InvalidInputError, match=f"resolves to {outside}"):
        check_script(spec(script=str(scripts / "innocent.py")), [scripts])


def test_working_dir_and_output_dir_must_be_inside_the_allowed_directories(
    scripts: Path, tmp_path: Path
) -> None:
    train = str(scripts / "train.py")
    with pytest.raises(InvalidInputError, match="working_dir"):
        check_script(spec(script=train, working_dir=str(tmp_path)), [scripts])
    with pytest.raises(InvalidInputError, match="output_dir"):
        check_script(spec(script=train, output_dir="../outside"), [scripts])


def test_an_accepted_script_has_absolute_paths_with_its_directory_as_default_working_dir(
    scripts: Path,
) -> None:
    checked = check_script(spec(script=str(scripts / "train.py"), output_dir="out"), [scripts])
    assert checked.working_dir == str(scripts)
    assert checked.output_dir == str(scripts / "out")
    assert checked.script == str(scripts / "train.py")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("CUDA_VISIBLE_DEVICES", "set by the worker"),
        ("OMP_NUM_THREADS", "set by the worker"),
        ("MCP_TRAINER_REPORT_FD", "set by the worker"),
        ("LD_PRELOAD", "chooses which code a program loads"),
        ("PYTHONPATH", "chooses which code a program loads"),
        ("PATH", "chooses which code a program loads"),
        ("1BAD", "not a variable name"),
        ("A-B", "not a variable name"),
    ],
)
def test_an_environment_variable_a_caller_may_not_set_is_refused_by_name(name: str, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words) as refused:
        spec(script="/x/train.py", env={name: "1"})
    assert "validation error" not in str(refused.value)


def test_harmless_python_settings_and_ordinary_names_are_accepted_in_env() -> None:
    assert spec(script="/x/train.py", env={"PYTHONHASHSEED": "0", "MY_SETTING": "a"}).env["MY_SETTING"] == "a"


def test_a_script_task_names_exactly_one_program() -> None:
    with pytest.raises(InvalidInputError, match="either script"):
        spec()
    with pytest.raises(InvalidInputError, match="either script"):
        spec(script="/x/train.py", command=["/x/run.sh"])


def test_a_command_must_name_an_executable_file_inside_the_allowed_directories_by_its_path(
    scripts: Path,
) -> None:
    with pytest.raises(InvalidInputError, match="bare name"):
        check_script(spec(command=["bash", "-c", "echo hi"]), [scripts])
    plain = write_script(scripts, "run.sh", "#!/bin/sh\necho hi\n")
    with pytest.raises(InvalidInputError, match="not executable"):
        check_script(spec(command=[str(plain)]), [scripts])
    plain.chmod(0o755)
    relative = check_script(spec(command=["./run.sh", "a"], working_dir=str(scripts)), [scripts])
    assert relative.command == [str(plain), "a"]


def test_an_interpreter_linked_from_an_allowed_directory_is_refused_where_it_resolves(scripts: Path) -> None:
    (scripts / "python").symlink_to(os.path.realpath("/bin/sh"))
    with pytest.raises(InvalidInputError, match="resolves to"):
        check_script(spec(command=[str(scripts / "python")]), [scripts])


def test_the_command_line_refuses_a_script_directory_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--allow-scripts-from", str(tmp_path / "missing")])
    assert "is not a directory" in capsys.readouterr().err
    assert parse_args([]).allow_scripts_from == []  # off unless asked for


def test_the_command_line_hands_the_script_directories_to_the_server(
    tmp_path: Path, scripts: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    configs: list[ServerConfig] = []
    build = mcp_trainer.server.build_server
    monkeypatch.setattr(mcp_trainer.server, "build_server", lambda c, **k: configs.append(c) or build(c, **k))
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: None)
    dirs = ["--queue-dir", str(tmp_path / "queue"), "--models-dir", str(tmp_path / "models")]
    assert (
        main(["--transport", "streamable-http", "--no-auth", *dirs, "--allow-scripts-from", str(scripts)])
        == 0
    )
    (config,) = configs
    assert config.script_dirs == (scripts,)
    assert "script tasks are on: any caller may run the files in" in caplog.text
