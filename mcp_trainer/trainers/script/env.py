"""The environment a script runs with: the worker's, the caller's `env`, then what the worker must set.

The caller's variables come first and the worker's last, so nothing a caller sends (the spec refuses
those names anyway) can change what the task was granted or where its reports go: the thread pools of
OpenMP and BLAS sized to the task's cores, `CUDA_VISIBLE_DEVICES` to its GPUs (empty: none), and the
`MCP_TRAINER_*` variables: the task id and attempt, a work folder that survives retries (for the script's
own checkpoints), and the marker that finds every process of the script (custodian.py). The report pipe's
variable is added where the pipe is made (process.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mcp_trainer.report import TASK_ID_VAR
from mcp_trainer.specs.script import THREAD_ENV, WORKER_ENV_PREFIX
from mcp_trainer.trainers.script.custodian import MARKER_VAR

__all__ = ["child_env"]


def child_env(
    base: Mapping[str, str],
    caller: Mapping[str, str],
    *,
    cpu_share: int,
    gpus: Sequence[int],
    task_id: str,
    attempt: int,
    work_dir: Path,
    marker: str,
) -> dict[str, str]:
    """The script's environment: `base` (the worker's own), `caller`'s variables, then the worker's."""
    env = {k: v for k, v in base.items() if not k.startswith(WORKER_ENV_PREFIX)}
    env["PYTHONUNBUFFERED"] = "1"  # its output reaches the log line by line (a caller may say otherwise)
    env.update(caller)
    for name in THREAD_ENV:
        env[name] = str(cpu_share)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    env[TASK_ID_VAR] = task_id
    env["MCP_TRAINER_ATTEMPT"] = str(attempt)
    env["MCP_TRAINER_WORK_DIR"] = str(work_dir)
    env[MARKER_VAR] = marker
    return env
