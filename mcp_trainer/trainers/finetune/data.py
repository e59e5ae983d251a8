"""Text datasets of a fine-tune: reading, the train/eval split, tokenization and collation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mcp_trainer.files import sha256_of
from mcp_trainer.preflight.readers import ENCODING, NA_VALUES
from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.trainers.base import TaskFailure

__all__ = ["Collated", "Examples", "TextData", "collate", "load_text_data", "read_texts", "tokenize"]


@dataclass
class Collated:
    tensors: dict[str, torch.Tensor]
    n_examples: int
    n_tokens: int


@dataclass
class Examples:
    """Tokenized examples: token ids, and per example a label (classification) or per-token labels (LM)."""

    input_ids: list[list[int]]
    labels: list[int] | list[list[int]]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class TextData:
    train: Examples
    eval: Examples | None
    labels: list[str] | None  # class names, in the order of the model's head
    sha256: str
    truncated: int  # training examples cut at max_seq_length


def read_texts(
    path_text: str, columns: list[str], *, drop_na_text: bool = True, max_rows: int | None = None
) -> pd.DataFrame:
    """The named columns of a CSV, TSV or JSON lines file, as strings; rows with no text are dropped (and,
    with `drop_na_text`, rows whose text is a missing-value word such as NA). With `max_rows`, reading
    stops after that many rows (and one more, so that a caller can tell the file is longer)."""
    source = parse_source(path_text)
    assert source.path is not None
    nrows = None if max_rows is None else max_rows + 1
    if source.format == "jsonl":
        frame = pd.read_json(
            source.path, lines=True, dtype=False, encoding=ENCODING, convert_dates=False, nrows=nrows
        )
        frame = frame.astype(object).where(frame.notna(), "")
        frame = frame.map(lambda v: "" if v is None else str(v))
    else:
        frame = pd.read_csv(
            source.path,
            sep="\t" if source.format == "tsv" else ",",
            dtype=str,
            keep_default_na=False,
            encoding=ENCODING,
            nrows=nrows,
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"columns {missing} are not in {source.path.name}.",
            f"Its columns: {list(frame.columns)}.",
        )
    frame = frame[columns].astype(str)
    text = frame[columns[0]].str.strip()
    keep = text != ""
    if drop_na_text:
        keep &= ~text.isin(NA_VALUES)
    return frame[keep].reset_index(drop=True)


def tokenize(
    tokenizer: Any, spec: FinetuneSpec, frame: pd.DataFrame, label_ids: dict[str, int] | None
) -> tuple[Examples, int]:
    """Token ids (cut at max_seq_length) and labels; returns the examples and how many were cut."""
    limit = spec.max_seq_length
    if spec.is_classification:
        assert label_ids is not None
        encoded = tokenizer(frame[spec.text_column].tolist(), truncation=False, add_special_tokens=True)
        ids = [list(x) for x in encoded["input_ids"]]
        cut = sum(len(x) > limit for x in ids)
        ids = [x if len(x) <= limit else [*x[: limit - 1], x[-1]] for x in ids]
        labels = [label_ids[v.strip()] for v in frame[spec.effective_label_column]]
        return Examples(ids, labels), cut
    eos = tokenizer.eos_token or ""
    if spec.prompt_column is None:
        encoded = tokenizer([t + eos for t in frame[spec.text_column]], add_special_tokens=True)
        ids = [list(x) for x in encoded["input_ids"]]
        cut = sum(len(x) > limit for x in ids)
        ids = [x[:limit] for x in ids]
        return Examples(ids, [list(x) for x in ids]), cut
    assert spec.completion_column is not None
    prompts = tokenizer(frame[spec.prompt_column].tolist(), add_special_tokens=True)["input_ids"]
    completions = tokenizer([c + eos for c in frame[spec.completion_column]], add_special_tokens=False)[
        "input_ids"
    ]
    ids_out: list[list[int]] = []
    labels_out: list[list[int]] = []
    cut = 0
    for p, c in zip(prompts, completions, strict=True):
        full = list(p) + list(c)
        labels = [-100] * len(p) + list(c)
        if len(full) > limit:
            cut += 1
            full, labels = full[:limit], labels[:limit]
        ids_out.append(full)
        labels_out.append(labels)
    return Examples(ids_out, labels_out), cut


def _split(frame: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_eval = max(1, round(len(frame) * share))
    return shuffled.iloc[n_eval:].reset_index(drop=True), shuffled.iloc[:n_eval].reset_index(drop=True)


def load_text_data(spec: FinetuneSpec, tokenizer: Any, head_labels: list[str] | None) -> TextData:
    """Read, split and tokenize the dataset. `head_labels`: the labels of an existing head to keep."""
    drop_na = spec.prompt_column is None
    frame = read_texts(spec.data_source, spec.columns, drop_na_text=drop_na)
    if frame.empty:
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"{spec.data_source} has no examples with text.",
            "Give rows with non-empty text.",
        )
    eval_frame: pd.DataFrame | None = None
    if spec.eval_data_source is not None:
        eval_frame = read_texts(spec.eval_data_source, spec.columns, drop_na_text=drop_na)
    elif spec.eval_split > 0:
        frame, eval_frame = _split(frame, spec.eval_split, spec.seed)
    labels: list[str] | None = None
    label_ids: dict[str, int] | None = None
    if spec.is_classification:
        found = sorted({v.strip() for v in frame[spec.effective_label_column]})
        labels = head_labels if head_labels is not None else found
        label_ids = {name: i for i, name in enumerate(labels)}
        seen = set(found) | (
            {v.strip() for v in eval_frame[spec.effective_label_column]} if eval_frame is not None else set()
        )
        unknown = sorted(seen - set(labels))
        if unknown:
            raise TaskFailure(
                ErrorKind.DATA_ERROR,
                f"labels {unknown[:10]} are not among the model head's labels {labels[:10]}.",
                "Pass replace_head=true to train a new head for these labels.",
            )
    train, truncated = tokenize(tokenizer, spec, frame, label_ids)
    evaluation = tokenize(tokenizer, spec, eval_frame, label_ids)[0] if eval_frame is not None else None
    if evaluation is not None and len(evaluation) == 0:
        evaluation = None
    return TextData(train, evaluation, labels, sha256_of(Path(spec.data_source)), truncated)


def collate(examples: Examples, indices: Sequence[int], pad_id: int, causal: bool) -> Collated:
    """Pad a micro-batch to its longest example (right padding; labels of padding are ignored)."""
    rows = [examples.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    if causal:
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, idx in enumerate(indices):
            lab = examples.labels[idx]
            assert isinstance(lab, list)
            labels[i, : len(lab)] = torch.tensor(lab, dtype=torch.long)
    else:
        labels = torch.tensor([examples.labels[i] for i in indices], dtype=torch.long)
    tensors = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return Collated(tensors, len(rows), int(mask.sum().item()))
