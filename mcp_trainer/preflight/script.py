"""Where a script task's files may come from: the directories the server was started with
(`--allow-scripts-from`), and nothing when it was started without them.

The script (or the command's program), the working directory and the output directory must each
resolve, links followed, inside one of those directories. The check runs at submit (in the server) and
again in the worker before anything is started (the process that runs the queue must have opted in too,
and a link may have changed since). A bare program name (`bash`, `python`) is refused rather than looked
up on PATH: a program is a file the opt-in trusts, named by its path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.specs.script import ScriptSpec

__all__ = ["OPT_IN_FLAG", "check_script", "scripts_off"]

OPT_IN_FLAG = "--allow-scripts-from"


def scripts_off() -> InvalidInputError:
    """The refusal of a script task by a server that was not started with the opt-in."""
    return InvalidInputError(
        f"Script tasks are off on this server: it was not started with {OPT_IN_FLAG}.",
        f"Whoever runs the server can start it with {OPT_IN_FLAG} DIR (repeatable), naming the directories "
        "whose scripts may run (the Python API: TrainingService(..., script_dirs=[DIR])). Every file in "
        "them can then be run by any caller of this server.",
    )


def check_script(spec: ScriptSpec, allowed: Sequence[Path]) -> ScriptSpec:
    """`spec` with its program, working directory and output directory absolute and links resolved, once
    each is inside one of `allowed` (resolved directories). InvalidInputError says which is not, or that
    scripts are off (`allowed` is empty). Blocking: it touches the file system."""
    if not allowed:
        raise scripts_off()
    roots = tuple(allowed)
    given_dir = None
    if spec.working_dir is not None:
        given_dir = _inside(_absolute(spec.working_dir, "working_dir"), roots, "working_dir")
    if spec.script is not None:
        program = _inside(_absolute(spec.script, "script"), roots, "script")
        if not program.is_file():
            raise InvalidInputError(
                f"script {spec.script!r} is not a file.", "Give the path of a Python file."
            )
        command = None
    else:
        assert spec.command is not None
        program = _program(spec.command[0], given_dir, roots)
        command = [str(program), *spec.command[1:]]
    working_dir = given_dir or program.parent
    if not working_dir.is_dir():
        raise InvalidInputError(f"working_dir {spec.working_dir!r} is not a directory.")
    output_dir = None
    if spec.output_dir is not None:
        output_dir = str(_inside(working_dir / Path(spec.output_dir).expanduser(), roots, "output_dir"))
    update = {
        "script": str(program) if spec.script is not None else None,
        "command": command,
        "working_dir": str(working_dir),
        "output_dir": output_dir,
    }
    return spec.model_copy(update=update)


def _absolute(text: str, what: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise InvalidInputError(
            f"{what} {text!r} is not an absolute path.",
            "Paths are on the machine that runs the server; give the absolute path.",
        )
    return path


def _program(text: str, working_dir: Path | None, roots: tuple[Path, ...]) -> Path:
    """The command's program as a file inside the allowed directories, executable."""
    path = Path(text).expanduser()
    if not path.is_absolute():
        if "/" not in text:
            raise InvalidInputError(
                f"command[0] {text!r} is a bare name: the program must be a file inside a directory "
                f"this server allows ({OPT_IN_FLAG}), named by its path.",
                "Give its absolute path. To run a shell or another interpreter, put a launcher script "
                "(with its #! line) in an allowed directory and run that.",
            )
        if working_dir is None:
            raise InvalidInputError(
                f"command[0] {text!r} is a relative path, and no working_dir says what it is relative to.",
                "Give the program's absolute path, or working_dir.",
            )
        path = working_dir / path
    program = _inside(path, roots, "command[0]")
    if not program.is_file():
        raise InvalidInputError(f"command[0] {text!r} is not a file.", "Give the path of the program to run.")
    if not os.access(program, os.X_OK):
        raise InvalidInputError(
            f"command[0] {text!r} is not executable.", f"Make it executable (chmod +x {program})."
        )
    return program


def _inside(path: Path, roots: tuple[Path, ...], what: str) -> Path:
    """`path` resolved (links followed), once it is inside one of `roots`."""
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        via = "" if resolved == path else f" (it resolves to {resolved})"
        raise InvalidInputError(
            f"{what} {str(path)!r} is outside the directories scripts may come from{via}.",
            f"Use a path under {shown} ({OPT_IN_FLAG}).",
        )
    return resolved
