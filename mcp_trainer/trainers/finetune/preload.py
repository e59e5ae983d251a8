"""Imported once by the fine-tune forkserver (engine/forkservers.py), so that a fine-tune's worker starts
with torch, transformers, peft and the fine-tune trainer already imported (~5 s here, 6-9 s on a GPU
machine, paid once rather than by every task).

What it must not do, because every worker is forked from this process:
- touch CUDA: a process forked after CUDA is initialised cannot use it, and each worker must see only
  its own GPUs (it sets CUDA_VISIBLE_DEVICES before its first CUDA call). Importing torch initialises
  nothing; `torch.cuda.is_available()` would, so nothing here calls it.
- start torch's OpenMP pool: a pool started here would be broken in every forked child. No tensor
  operation runs here; each worker sets its own thread count (`torch.set_num_threads`) before its first.
BLAS (numpy's OpenBLAS, used by pandas and the data loading) is set to one thread here, as in the
tabular forkserver (trainers/threads.py says why it must happen before any fork).
"""

from __future__ import annotations

import contextlib
import gc

import torch  # noqa: F401
import transformers  # noqa: F401
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401 (the loss curve)
from matplotlib.figure import Figure  # noqa: F401
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401

import mcp_trainer.trainers.finetune.infer
import mcp_trainer.trainers.finetune.trainer  # noqa: F401
from mcp_trainer.trainers.threads import one_blas_thread

with contextlib.suppress(ImportError):  # peft is needed by LoRA fine-tunes only
    import peft  # noqa: F401

one_blas_thread()
gc.freeze()  # keep the workers' collector off what is loaded now (as the tabular forkserver does)
