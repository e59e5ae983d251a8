"""Hugging Face models of a fine-tune: the device, loading from a local directory, LoRA, saving."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.trainers.base import TaskFailure

__all__ = ["DeviceInfo", "build_model", "head_labels", "load_tokenizer", "pick_device", "save_pretrained"]

log = logging.getLogger(__name__)

# Models come from local directories only: never reach out to the hub, and keep worker logs readable.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence the load reports, progress bars and deprecation chatter of transformers and peft."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        hf_logging.set_verbosity(before)


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    name: str  # e.g. "cuda:0 (NVIDIA H100 80GB HBM3)" or "cpu"
    autocast_dtype: torch.dtype | None
    precision: str  # what the training runs in: fp32 or bf16-autocast

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def pick_device(precision: str) -> DeviceInfo:
    """CUDA when available (CUDA_VISIBLE_DEVICES decides which GPU is cuda:0), else the CPU."""
    if torch.cuda.is_available():
        device = torch.device("cuda", 0)
        name = f"cuda:0 ({torch.cuda.get_device_name(0)})"
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not bf16_ok:
            raise TaskFailure(
                ErrorKind.DATA_ERROR,
                f"precision='bf16' was asked for but {name} does not support bfloat16.",
                "Use precision='auto' or 'fp32'.",
            )
        use_bf16 = precision == "bf16" or (precision == "auto" and bf16_ok)
    else:
        device = torch.device("cpu")
        name = "cpu"
        if precision == "bf16":
            raise TaskFailure(
                ErrorKind.DATA_ERROR,
                "precision='bf16' needs a GPU; this machine has none.",
                "Use 'auto' or 'fp32'.",
            )
        use_bf16 = False
    dtype = torch.bfloat16 if use_bf16 else None
    return DeviceInfo(device, name, dtype, "bf16-autocast" if use_bf16 else "fp32")


def _load_error(spec: FinetuneSpec, exc: BaseException, what: str) -> TaskFailure:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TaskFailure(
        ErrorKind.DATA_ERROR,
        f"The {what} in {spec.model_path} does not load: {type(exc).__name__}: {reason[:400]}",
        "Check that the directory was written by save_pretrained() with a transformers version that "
        "knows this model type, and that its files are complete.",
    )


def load_tokenizer(spec: FinetuneSpec) -> Any:
    from transformers import AutoTokenizer

    try:
        with quiet_hf():
            tokenizer = AutoTokenizer.from_pretrained(spec.model_path, local_files_only=True)
    except Exception as exc:
        raise _load_error(spec, exc, "tokenizer") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise TaskFailure(
                ErrorKind.DATA_ERROR,
                f"The tokenizer in {spec.model_path} has neither a pad token nor an end-of-sequence token.",
                "Give the tokenizer a pad_token and save it again.",
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def head_labels(spec: FinetuneSpec) -> list[str] | None:
    """The labels of the model's existing classification head when it is kept, in head order; else None."""
    if not spec.is_classification or spec.replace_head:
        return None
    config = json.loads((Path(spec.model_path) / "config.json").read_text(encoding="utf-8"))
    architectures = [str(a) for a in config.get("architectures") or []]
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return None
    id2label = config.get("id2label") or {}
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    if all(n.startswith("LABEL_") for n in names):
        return None  # generic names: the dataset's labels name the head's outputs
    return names


def build_model(spec: FinetuneSpec, labels: list[str] | None, tokenizer: Any) -> nn.Module:
    """Load the model for the task (with a head for `labels`), wrapped in LoRA adapters if asked."""
    try:
        with quiet_hf():
            model = _load(spec, labels)
    except Exception as exc:
        raise _load_error(spec, exc, "model") from None
    config: Any = model.config
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    if spec.effective_method == "lora":
        with quiet_hf():
            model = _with_lora(model, spec)
    return model


def _load(spec: FinetuneSpec, labels: list[str] | None) -> nn.Module:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if spec.is_classification:
        assert labels is not None
        model: nn.Module = AutoModelForSequenceClassification.from_pretrained(
            spec.model_path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            ignore_mismatched_sizes=True,
            local_files_only=True,
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(spec.model_path, local_files_only=True)
    return model


def _with_lora(model: nn.Module, spec: FinetuneSpec) -> nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS if spec.is_classification else TaskType.CAUSAL_LM,
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=spec.lora_target_modules,
    )
    try:
        wrapped: nn.Module = get_peft_model(model, config)
    except ValueError as exc:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"LoRA cannot adapt this model: {exc}",
            f"Pass lora_target_modules naming some of its linear layers: {names[:20]}.",
        ) from None
    return wrapped


def count_parameters(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def save_pretrained(model: Any, tokenizer: Any, target: Path) -> list[str]:
    """Write the model (or its LoRA adapter) and tokenizer for from_pretrained; returns the files written."""
    with quiet_hf():
        model.save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
    return sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())


def gpu_memory_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
