"""Checks a fine-tune before it is queued: the model directory and the text dataset (stdlib only).

Everything here runs in the server process, so it reads config.json and the data file by hand and never
imports torch or transformers; what only loading can tell (a corrupt weights file) fails the task later,
classified as a data error.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.preflight.readers import NA_VALUES, Reader, Sample, check_file, check_header_size, text_rows
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.sources import parse_source

__all__ = [
    "MAX_CLASSES",
    "MAX_NEW_TOKENS",
    "TextDatasetSummary",
    "check_finetune",
    "check_finetune_installed",
    "check_model_dir",
]

MAX_CLASSES = 1000
MAX_NEW_TOKENS = 512
_STACK = ("torch", "transformers", "peft")
_WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_TOKENIZER = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


@dataclass(frozen=True)
class TextDatasetSummary:
    rows: int  # examples in the sample (all of them when `complete`)
    labels: list[str] | None
    complete: bool = True  # the sample was the whole file


def check_finetune_installed() -> None:
    """Fine-tunes need the `torch` extra; say how to install it (without importing anything heavy)."""
    missing = [name for name in _STACK if importlib.util.find_spec(name) is None]
    if missing:
        raise InvalidInputError(
            f"Fine-tunes need {', '.join(missing)}, which this server's environment lacks.",
            "Install the extra: pip install 'mcp-trainer[torch]' -c constraints/torch-cpu.txt "
            "(or a CUDA build of torch on a GPU machine), then restart the server.",
        )


def check_model_dir(path_text: str, task_type: str) -> dict[str, Any]:
    """The model's config.json once the directory looks loadable; InvalidInputError naming what is missing."""
    path = Path(path_text).expanduser()
    if not path.exists():
        raise InvalidInputError(
            f"model_path {path_text!r} does not exist.",
            "Pass the absolute path of a local Hugging Face model directory (the output of save_pretrained).",
        )
    if not path.is_dir():
        raise InvalidInputError(
            f"model_path {path_text!r} is not a directory.", "Pass the model's directory."
        )
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(
            f"model_path {path_text!r} has no config.json, so it is not a Hugging Face model directory.",
            "Save the model with save_pretrained() and pass that directory.",
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"config.json in {path_text!r} cannot be read: {exc}.") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise InvalidInputError(f"config.json in {path_text!r} has no model_type.", "Re-save the model.")
    if not any((path / name).is_file() for name in _WEIGHTS):
        raise InvalidInputError(
            f"model_path {path_text!r} has no weights ({' or '.join(_WEIGHTS[:2])}).",
            "Save the model with save_pretrained() so the weights are next to config.json.",
        )
    if not any((path / name).is_file() for name in _TOKENIZER):
        raise InvalidInputError(
            f"model_path {path_text!r} has no tokenizer files.",
            "Save the tokenizer into the same directory (tokenizer.save_pretrained(path)).",
        )
    architectures = [str(a) for a in config.get("architectures") or []]
    if task_type == "causal_lm_finetune" and any(
        a.endswith("ForSequenceClassification") for a in architectures
    ):
        raise InvalidInputError(
            f"model_path {path_text!r} is a sequence classifier ({architectures[0]}), not a causal LM.",
            "Use text_classification_finetune for it, or pass a causal language model.",
        )
    return config


def _check_text_file(data_source: str, spec: FinetuneSpec, what: str) -> tuple[Path, TextDatasetSummary]:
    source = parse_source(data_source)
    if source.format not in ("csv", "tsv", "jsonl"):
        raise InvalidInputError(
            f"{what} {data_source!r} is not a CSV, TSV or JSON lines file.",
            "Fine-tunes read text from a .csv, .tsv or .jsonl file with one example per row.",
        )
    assert source.path is not None
    path = source.path.resolve()
    check_file(path, text=True)
    try:
        with text_rows(path, source.format) as (reader, lines):
            return path, _check_text_rows(reader, lambda: lines.chars, data_source, path, spec, what)
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{what} {data_source!r} is not UTF-8 text.", "Re-save it as UTF-8."
        ) from None
    except csv.Error as exc:
        raise InvalidInputError(f"{what} {data_source!r} is not valid CSV: {exc}.") from None


def _check_text_rows(
    reader: Reader, chars: Callable[[], int], data_source: str, path: Path, spec: FinetuneSpec, what: str
) -> TextDatasetSummary:
    """Check a sample of the rows (readers.py): the columns, labels, and that there is text."""
    header = [h.strip() for h in next(reader, [])]
    check_header_size(header, path)
    if not any(header):
        raise InvalidInputError(f"{what} {data_source!r} is empty.", "Give a header row and examples.")
    shown = ", ".join(header[:30])
    for column in spec.columns:
        if column not in header:
            raise InvalidInputError(
                f"column {column!r} is not in {path.name}.",
                f"Its columns are: {shown}. Name the right one.",
            )
    index = [header.index(c) for c in spec.columns]
    n = 0
    labels: set[str] = set()
    sample = Sample(reader, chars)
    for line, row in enumerate(sample, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidInputError(
                f"Row {line} of {path.name} has {len(row)} fields but the header has {len(header)}.",
                "Fix the quoting of that row.",
            )
        values = [row[i].strip() for i in index]
        if spec.is_classification and values[1] in NA_VALUES:
            raise InvalidInputError(
                f"Row {line} of {path.name} has no label.", "Give every row a label, or remove it."
            )
        if not values[0] or (spec.prompt_column is None and values[0] in NA_VALUES):
            continue  # an empty text trains nothing; it is skipped
        n += 1
        if spec.is_classification:
            labels.add(values[1])
            if len(labels) > MAX_CLASSES:
                raise InvalidInputError(
                    f"{spec.effective_label_column!r} has more than {MAX_CLASSES} distinct labels.",
                    "Is it the right column? Labels are categories, not free text.",
                )
    if n == 0 and sample.complete:
        raise InvalidInputError(
            f"{what} {data_source!r} has no examples (no row with a non-empty {spec.columns[0]!r}).",
            "Give a file with at least a few rows of text.",
        )
    labelled = sorted(labels) if spec.is_classification else None
    return TextDatasetSummary(rows=n, labels=labelled, complete=sample.complete)


def _check_head(config: dict[str, Any], labels: list[str], spec: FinetuneSpec) -> None:
    """A model that already has a classification head must be fine-tuned on labels that fit it."""
    architectures = [str(a) for a in config.get("architectures") or []]
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return  # a base model: a new head is made for the dataset's labels
    id2label = config.get("id2label") or {}
    head = sorted(str(v) for v in id2label.values()) if isinstance(id2label, dict) else []
    generic = all(name.startswith("LABEL_") for name in head)
    if len(head) != len(labels) or (not generic and head != labels):
        raise InvalidInputError(
            f"The dataset's labels {labels[:20]} do not match the model's classification head "
            f"({len(head)} labels: {head[:20]}).",
            "Use labels the head knows, pass replace_head=true to train a new head, "
            "or start from the base model.",
        )


def check_finetune(spec: FinetuneSpec) -> FinetuneSpec:
    """The spec with absolute paths once its model directory and data passed the checks (blocking)."""
    check_finetune_installed()
    config = check_model_dir(spec.model_path, spec.task_type)
    data_path, summary = _check_text_file(spec.data_source, spec, "data_source")
    update: dict[str, Any] = {
        "model_path": str(Path(spec.model_path).expanduser().resolve()),
        "data_source": str(data_path),
    }
    labels = summary.labels
    if spec.eval_data_source is not None:
        eval_path, eval_summary = _check_text_file(spec.eval_data_source, spec, "eval_data_source")
        update["eval_data_source"] = str(eval_path)
        if labels is not None and eval_summary.labels is not None:
            unseen = sorted(set(eval_summary.labels) - set(labels))
            if unseen:
                raise InvalidInputError(
                    f"eval_data_source has labels the training data lacks: {unseen[:20]}.",
                    "Evaluate on labels the model is trained on.",
                )
    elif spec.eval_split > 0 and summary.rows < 4:
        raise InvalidInputError(
            f"{summary.rows} examples are too few to hold some out for evaluation.",
            "Give more rows, or set eval_split=0.",
        )
    if labels is not None:
        if len(labels) < 2:
            raise InvalidInputError(
                f"label column {spec.effective_label_column!r} has only one label ({labels[0]!r}).",
                "A classifier needs examples of at least two labels.",
            )
        if not spec.replace_head:
            _check_head(config, labels, spec)
    return spec.model_copy(update=update)
