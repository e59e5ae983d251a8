"""What a caller asks for when running their own training script as a task (`task_type: "script"`).

A Python file (`script`, run with the server's own interpreter so that `mcp_trainer.report` imports) or a
program with its arguments (`command`, no shell), with its working directory, arguments, environment, an
optional output directory that becomes a model entry, and a time limit. Where the files may come from is
the server's opt-in (`--allow-scripts-from`), checked in preflight/script.py; this module checks the
shape only, and the environment's names: a caller may not set what the worker sets from the task's grant
(GPUs, thread counts, the report channel), nor the variables that choose which code a program loads.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_trainer.specs.outputs import MODEL_OUTPUTS
from mcp_trainer.specs.sources import PathText

__all__ = [
    "CODE_LOADING_ENV",
    "SCRIPT_TASK_TYPES",
    "THREAD_ENV",
    "WORKER_ENV",
    "WORKER_ENV_PREFIX",
    "ScriptSpec",
    "refused_env_name",
]

SCRIPT_TASK_TYPES: tuple[str, ...] = ("script",)
_DAY_S = 7 * 24 * 3600
_MAX_VALUE = 4096  # characters of one argument or one environment value

# Set by the worker from the task's grant and its report channel: a caller's value would lie to the script.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
WORKER_ENV = frozenset({"CUDA_VISIBLE_DEVICES", *THREAD_ENV})
WORKER_ENV_PREFIX = "MCP_TRAINER_"
# Variables that make an interpreter, the loader or a tool load code from elsewhere than the allowed
# directories: a caller who could set them could run code of its choosing through a trusted script.
CODE_LOADING_ENV = frozenset(
    {
        *("PATH", "HOME", "XDG_CONFIG_HOME", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4"),
        *("PROMPT_COMMAND", "GCONV_PATH", "PERLLIB", "PERL5LIB", "PERL5OPT", "RUBYLIB", "RUBYOPT"),
        *("NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS"),
    }
)
_CODE_LOADING_PREFIXES = ("LD_", "DYLD_", "PYTHON", "GIT_")
# PYTHON* variables that only tune the interpreter's behaviour, never what it imports.
_HARMLESS_PYTHON = frozenset(
    {
        "PYTHONUNBUFFERED",
        "PYTHONHASHSEED",
        "PYTHONIOENCODING",
        "PYTHONFAULTHANDLER",
        "PYTHONDONTWRITEBYTECODE",
    }
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Argument = Annotated[str, Field(max_length=_MAX_VALUE)]


def refused_env_name(name: str) -> str | None:
    """Why a caller may not set the environment variable `name` for a script, or None when it may."""
    if not _ENV_NAME.fullmatch(name) or len(name) > 128:
        return f"env name {name[:80]!r} is not a variable name (letters, digits and _, not first a digit)"
    if name in WORKER_ENV or name.startswith(WORKER_ENV_PREFIX):
        return (
            f"env {name} is set by the worker (from the task's cores and GPUs, or for its report channel); "
            "ask for resources with cpu_cores and gpu_count"
        )
    upper = name.upper()
    if upper in _HARMLESS_PYTHON:
        return None
    if upper in CODE_LOADING_ENV or upper.startswith(_CODE_LOADING_PREFIXES):
        return (
            f"env {name} chooses which code a program loads, so a caller may not set it; "
            "put such settings in the script, or in a launcher script in an allowed directory"
        )
    return None


class ScriptSpec(BaseModel):
    """The user's own training script run as a task. Every field is a parameter of the
    `submit_script_task` tool, whose schema is generated from this model."""

    model_config = ConfigDict(extra="forbid")

    task_type: Literal["script"] = Field(default="script", description="Always 'script'.")
    script: PathText | None = Field(
        default=None, description="Absolute path of a Python file, run with the server's Python."
    )
    command: Annotated[list[Argument], Field(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Instead of script: a program and its arguments (no shell); the program is an "
        "executable file (absolute, or relative to working_dir).",
    )
    args: Annotated[list[Argument], Field(max_length=256)] = Field(
        default_factory=list, description="Arguments after the script or command."
    )
    working_dir: PathText | None = Field(
        default=None, description="Absolute directory it runs in; default the script's or program's."
    )
    env: Annotated[dict[str, Annotated[str, Field(max_length=_MAX_VALUE)]], Field(max_length=100)] = Field(
        default_factory=dict, description="Extra environment variables."
    )
    output_dir: PathText | None = Field(
        default=None,
        description="A directory it writes (absolute, or relative to working_dir); on success copied "
        "into a model entry.",
    )
    timeout_s: Annotated[float, Field(gt=0, le=_DAY_S)] | None = Field(
        default=None, description="End it and fail the task after this long."
    )

    @field_validator("env")
    @classmethod
    def _names_allowed(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            why = refused_env_name(name)
            if why is not None:
                raise ValueError(why)
            if "\x00" in value:
                raise ValueError(f"env {name}'s value contains a NUL character")
        return env

    @field_validator("command", "args")
    @classmethod
    def _no_nul(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and any("\x00" in v for v in values):
            raise ValueError("an argument contains a NUL character")
        return values

    @model_validator(mode="after")
    def _one_program(self) -> ScriptSpec:
        if (self.script is None) == (self.command is None):
            raise ValueError("give either script (a Python file) or command (a program and its arguments)")
        if self.command is not None and not self.command[0]:
            raise ValueError("command[0], the program, is empty")
        return self

    @property
    def program(self) -> str:
        """The file that is run: the script, or the command's program."""
        if self.script is not None:
            return self.script
        assert self.command is not None
        return self.command[0]

    def outputs(self) -> frozenset[str]:
        """The named outputs its result holds (a later pipeline stage may refer to them): the exit code
        and the artifacts it reported; with output_dir, the model entry it becomes and where it was saved."""
        made = frozenset({"exit_code", "artifacts"})
        if self.output_dir is None:
            return made
        return made | MODEL_OUTPUTS | {"output_dir", "saved_output_dir"}
