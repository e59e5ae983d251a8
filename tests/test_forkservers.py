"""The forkservers workers come from: one per training stack, each preloading its stack once, without
starting a thread pool or CUDA that a forked worker would inherit broken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mcp_trainer.engine import forkservers


def _parent_cmdline(out: str) -> None:
    """Run in a forked worker: write its parent's (the forkserver's) command line to `out`."""
    Path(out).write_text(" ".join(psutil.Process(os.getppid()).cmdline()))


@pytest.mark.parametrize(
    ("task_type", "preload"),
    [
        ("svm_classification", "mcp_trainer.trainers.preload"),
        ("text_classification_finetune", "mcp_trainer.trainers.finetune.preload"),
    ],
)
def test_a_worker_is_forked_from_the_forkserver_that_preloads_its_tasks_stack(
    tmp_path: Path, task_type: str, preload: str
) -> None:
    out = tmp_path / "parent"
    p = forkservers.WorkerProcess(
        forkservers.stack_of_task(task_type), target=_parent_cmdline, args=(str(out),)
    )
    p.start()
    p.join(120)
    assert p.exitcode == 0
    assert f"'{preload}'" in out.read_text() and "multiprocessing.forkserver" in out.read_text()
    assert forkservers.is_warm(forkservers.stack_of_task(task_type))


def test_a_fine_tunes_prediction_and_generation_jobs_use_the_torch_forkserver() -> None:
    assert forkservers.stack_of_job("mcp_trainer.trainers.finetune.infer:generate") == "torch"
    assert forkservers.stack_of_job("mcp_trainer.trainers.tabular.predict:predict") == "sklearn"


_PROBE = """
import os, sys
threads = lambda: len(os.listdir('/proc/self/task'))
{before}
before = threads()
{load}
print(threads() - before, {extra})
"""


def _probe(before: str, load: str, extra: str) -> str:
    code = _PROBE.format(before=before, load=load, extra=extra)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True
    )
    return out.stdout.strip()


def test_the_tabular_warm_up_runs_a_fit_in_the_forkserver_without_starting_a_thread() -> None:
    printed = _probe(
        "import mcp_trainer.trainers.tabular.trainer\n"
        "from mcp_trainer.trainers.threads import one_blas_thread\none_blas_thread()",
        "from mcp_trainer.trainers.tabular.warm import warm_up\nwarm_up()",
        "'narwhals._pandas_like.dataframe' in sys.modules",  # imported by a first fit, not by an import
    )
    assert printed == "0 True"


def test_the_torch_preload_does_not_initialise_cuda_which_its_forked_workers_could_not_use() -> None:
    printed = _probe(
        "import torch", "import mcp_trainer.trainers.finetune.preload", "torch.cuda.is_initialized()"
    )
    assert printed.split()[1] == "False"
