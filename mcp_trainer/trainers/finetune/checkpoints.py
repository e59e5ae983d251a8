"""Checkpoints of a fine-tune under the task's work directory, written atomically, the last few kept.

A checkpoint is one `torch.save` file: the trainable weights, the optimizer and scheduler state, the loop
state and the random number generators, as tensors and plain Python values only, so that it loads with
`weights_only=True` (a file planted in the work directory cannot run code when loaded). It is written to
a temporary name, fsynced and renamed, so a kill at any moment leaves either the previous checkpoint or the
new one; a file that does not load (a torn write on a full disk, a foreign file) is skipped in favour of the
one before it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mcp_trainer.files import atomic_write

__all__ = ["CheckpointStore", "rng_state", "set_rng_state", "trainable_state"]

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step-(\d{9})\.pt$")


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes (all of them for a full fine-tune, the adapters for LoRA)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def rng_state() -> dict[str, Any]:
    legacy = np.random.get_state(legacy=True)
    assert isinstance(legacy, tuple)  # the legacy global generator is always MT19937
    kind, key, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": random.getstate(),
        # Plain numbers, not an ndarray: a checkpoint loads with weights_only=True (no arbitrary pickles).
        "numpy": [kind, key.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # a different number of GPUs than when it was saved
            torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


class CheckpointStore:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep

    def _steps(self) -> list[tuple[int, Path]]:
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found)

    def save(self, step: int, payload: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"step-{step:09d}.pt"
        _atomic_save(payload, path)
        for _, old in self._steps()[: -self.keep]:
            with contextlib.suppress(OSError):
                old.unlink()
        return path

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads, or None."""
        for step, path in reversed(self._steps()):
            try:
                # weights_only: tensors and plain containers only, so a checkpoint planted in the work
                # directory cannot run code when loaded.
                payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a torn, corrupt or foreign file: fall back to the one before
                log.warning("checkpoint %s does not load (%s); using an older one", path.name, exc)
                continue
            if payload.get("step") == step:
                return payload
        return None

    def save_best(self, weights: dict[str, torch.Tensor], step: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_save({"step": step, "weights": weights}, self.root / "best.pt")

    def load_best(self) -> dict[str, torch.Tensor] | None:
        path = self.root / "best.pt"
        if not path.is_file():
            return None
        try:
            data: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            log.warning("best.pt does not load (%s); keeping the last weights", exc)
            return None
        weights: dict[str, torch.Tensor] = data["weights"]
        return weights
