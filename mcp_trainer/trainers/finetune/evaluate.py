"""Evaluation of a fine-tune: mean eval loss, and accuracy and macro F1 (classifier) or perplexity (LM)."""

from __future__ import annotations

import math

import torch
from torch import nn

from mcp_trainer.trainers.finetune.data import Examples, collate

__all__ = ["EVAL_BATCH", "evaluate_examples"]

EVAL_BATCH = 64


def evaluate_examples(
    model: nn.Module,
    examples: Examples,
    pad_id: int,
    causal: bool,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    n_labels: int | None,
) -> dict[str, float]:
    """Mean eval loss, plus accuracy and macro F1 for a classifier or perplexity for a language model."""
    total_loss = 0.0
    weight = 0
    correct = 0
    confusion = torch.zeros((n_labels or 1, n_labels or 1), dtype=torch.long)
    for start in range(0, len(examples), EVAL_BATCH):
        idx = list(range(start, min(start + EVAL_BATCH, len(examples))))
        batch = collate(examples, idx, pad_id, causal)
        inputs = {k: v.to(device) for k, v in batch.tensors.items()}
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(**inputs)
        if causal:
            n = int((inputs["labels"][:, 1:] != -100).sum().item())
            total_loss += float(out.loss.float().item()) * n
            weight += n
        else:
            total_loss += float(out.loss.float().item()) * len(idx)
            weight += len(idx)
            pred = out.logits.argmax(dim=-1).cpu()
            gold = batch.tensors["labels"]
            correct += int((pred == gold).sum().item())
            for g, p in zip(gold.tolist(), pred.tolist(), strict=True):
                confusion[g, p] += 1
    loss = total_loss / max(weight, 1)
    metrics = {"eval_loss": round(loss, 6)}
    if causal:
        metrics["perplexity"] = round(math.exp(min(loss, 50.0)), 4)
    else:
        metrics["accuracy"] = round(correct / max(len(examples), 1), 6)
        f1s = []
        for c in range(confusion.shape[0]):
            tp = int(confusion[c, c])
            fp = int(confusion[:, c].sum()) - tp
            fn = int(confusion[c, :].sum()) - tp
            f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        metrics["f1_macro"] = round(sum(f1s) / len(f1s), 6)
    return metrics
