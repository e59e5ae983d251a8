"""A script's declared output directory, made a model entry: `trained_models/<model_id>/output/`.

The directory is copied (the script's own stays where it is) through the same atomic, signed save as
every model (`artifacts/model_dir.save_model_tree`): assembled under a temporary name, the sha256 of each
file recorded in `metadata.json` with their signature, renamed into place. It goes under `output/` so
that its names never meet the entry's own (`metadata.json`, `reports/`). Regular files and folders are
copied; a link or a special file in it is not (a link could name any file of the machine), and the
task's warnings say which were left out. A declared directory that is missing or holds no file fails
the task: the script did not make what it said it would.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_trainer.artifacts.model_dir import SCRIPT_OUTPUT_DIR, save_model_tree
from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.script import ScriptSpec
from mcp_trainer.trainers.base import TaskFailure, WorkerContext

__all__ = ["RunFacts", "save_output"]


@dataclass
class RunFacts:
    """What the model entry records about the run."""

    argv: list[str]
    exit_code: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)


def save_output(ctx: WorkerContext, spec: ScriptSpec, facts: RunFacts) -> Path:
    """Copy the script's output directory into the task's model entry; returns the entry's path. Raises
    TaskFailure when the directory is missing or empty, or holds the models directory itself."""
    assert spec.output_dir is not None
    source = Path(spec.output_dir)
    if not source.is_dir():
        raise TaskFailure(
            ErrorKind.SCRIPT_ERROR,
            f"The script exited with code 0 but its output_dir {source} does not exist (or is not a folder).",
            "Make the script write its output there, or leave output_dir out.",
        )
    if Path(ctx.models_dir).resolve().is_relative_to(source.resolve()):
        raise TaskFailure(
            ErrorKind.SCRIPT_ERROR,
            f"output_dir {source} holds the models directory {ctx.models_dir}: it cannot be copied into it.",
            "Declare the folder the script writes its model to, not one above the models directory.",
        )
    files, dirs, skipped = _walk(source)
    if not files:
        raise TaskFailure(
            ErrorKind.SCRIPT_ERROR,
            f"The script exited with code 0 but its output_dir {source} holds no file.",
            "Make the script write its output there, or leave output_dir out.",
        )
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        ctx.warn(f"output_dir: not copied into the model entry (links or special files): {shown}")

    def copy(target: Path) -> None:
        root = target / SCRIPT_OUTPUT_DIR
        for rel in ["", *dirs]:
            (root / rel).mkdir(parents=True, exist_ok=True)
        for rel in files:
            shutil.copy2(source / rel, root / rel, follow_symlinks=False)

    meta = _metadata(ctx, spec, facts, len(files), sum((source / f).stat().st_size for f in files), skipped)
    meta["timings_s"] = {"run": round(facts.seconds, 3)}
    reports: dict[str, str | bytes] = {"summary.md": _summary(meta)}
    return save_model_tree(ctx.models_dir, ctx.model_id, copy, meta, reports, ctx.signer)


def _walk(source: Path) -> tuple[list[str], list[str], list[str]]:
    """The regular files and folders under `source` (relative paths), and what is neither (skipped)."""
    files: list[str] = []
    dirs: list[str] = []
    skipped: list[str] = []
    for top, subdirs, names in os.walk(source):
        rel_top = Path(top).relative_to(source)
        for name in subdirs:
            (dirs if not (Path(top) / name).is_symlink() else skipped).append(str(rel_top / name))
        for name in names:
            mode = os.lstat(Path(top) / name).st_mode
            (files if stat.S_ISREG(mode) else skipped).append(str(rel_top / name))
    return sorted(files), sorted(dirs), sorted(skipped)


def _metadata(
    ctx: WorkerContext, spec: ScriptSpec, facts: RunFacts, n_files: int, n_bytes: int, skipped: list[str]
) -> dict[str, Any]:
    """metadata.json of a script's model entry (the saver adds the files' sha256 and their signature)."""
    parameters = spec.model_dump(mode="json")
    parameters["env"] = sorted(
        spec.env
    )  # the names only: values may be secrets, and get_model_info shows this
    return {
        "model_id": ctx.model_id,
        "task_id": ctx.record.task_id,
        "task_type": spec.task_type,
        "family": "script",
        "name": ctx.record.name,
        "user_id": ctx.record.user_id,
        "created_at": time.time(),
        "parameters": parameters,
        "command": facts.argv,
        "working_dir": spec.working_dir,
        "output_dir": spec.output_dir,
        "exit_code": facts.exit_code,
        "metrics": facts.metrics,
        "artifacts": facts.artifacts,
        "output": {"dir": SCRIPT_OUTPUT_DIR, "files": n_files, "bytes": n_bytes, "not_copied": skipped},
        "warnings": list(ctx.progress.warnings),
        "versions": {"python": platform.python_version()},
        # No plots: a script's entry has none to draw, and the report says nothing is pending.
        "plots": {"state": "drawn", "files": [], "bytes": {}, "skipped": {}, "failed": {}},
    }


def _summary(meta: dict[str, Any]) -> str:
    lines = [
        f"# {meta['model_id']}: the output of a script",
        "",
        f"- task: {meta['task_id']}" + (f" ({meta['name']})" if meta.get("name") else ""),
        f"- command: `{' '.join(meta['command'])}`",
        f"- working directory: {meta['working_dir']}",
        f"- exit code {meta['exit_code']} after {meta['timings_s']['run']:.1f} s",
        f"- output: {meta['output']['files']} file(s), {meta['output']['bytes']} bytes, copied from "
        f"{meta['output_dir']} into `{SCRIPT_OUTPUT_DIR}/`",
    ]
    if meta["metrics"]:
        lines += ["", "## Metrics (last value reported)", ""]
        lines += [f"- {name}: {value:g}" for name, value in meta["metrics"].items()]
    if meta["artifacts"]:
        lines += ["", "## Artifacts", ""] + [f"- {path}" for path in meta["artifacts"]]
    if meta["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in meta["warnings"]]
    lines += ["", "The server cannot run this entry (predict refuses it): load its files with your own code."]
    return "\n".join(lines) + "\n"
