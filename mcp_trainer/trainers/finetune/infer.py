"""Inference with a saved fine-tune, run in a job process: text classification and short generations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mcp_trainer.artifacts.model_dir import verify_model_files
from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.trainers.finetune.data import read_texts
from mcp_trainer.trainers.finetune.hf import quiet_hf

__all__ = ["generate", "predict_text"]

_BATCH = 32


def _device() -> torch.device:
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def _load(root: Path, meta: dict[str, Any], causal: bool) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    adapter = (root / "adapter_config.json").is_file()
    if adapter:
        base = json.loads((root / "adapter_config.json").read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
        if not base or not Path(base).is_dir():
            raise InvalidInputError(
                f"Model {meta['model_id']} is a LoRA adapter over {base!r}, which no longer exists.",
                "Put the base model back at that path, or train again from where it is now.",
            )
    try:
        with quiet_hf():
            tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
            if adapter:
                from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification

                peft_cls = AutoPeftModelForCausalLM if causal else AutoPeftModelForSequenceClassification
                model: nn.Module = peft_cls.from_pretrained(str(root), local_files_only=True)
            else:
                hf_cls = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
                # Only the safetensors weights it was saved with: a pickled .bin beside them is never read.
                model = hf_cls.from_pretrained(str(root), local_files_only=True, use_safetensors=True)
    except InvalidInputError:
        raise
    except Exception as exc:
        if not root.exists():  # delete_model ran since the files were checked
            raise InvalidInputError(
                f"Model {meta['model_id']} was deleted while this call was reading it.",
                "list_models shows the models.",
            ) from None
        raise InvalidInputError(
            f"Model {meta['model_id']} does not load: {type(exc).__name__}: {str(exc)[:300]}",
            "Train it again.",
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(_device()).eval(), tokenizer


_MAX_TEXTS = 10_000


def _verified(models_dir: str, model_id: str, signing_key_file: str) -> tuple[Path, dict[str, Any]]:
    try:
        return verify_model_files(Path(models_dir), model_id, ModelSigner(Path(signing_key_file)))
    except FileNotFoundError:  # delete_model ran since the metadata was read
        raise InvalidInputError(
            f"Model {model_id} was deleted while this call was reading it.", "list_models shows the models."
        ) from None


def _check_kind(meta: dict[str, Any], wanted: str, tool: str) -> None:
    if meta.get("task_type") != wanted:
        raise InvalidInputError(
            f"Model {meta['model_id']} is a {meta.get('task_type')} model; {tool} needs a {wanted} model.",
            "list_models shows each model's task type.",
        )


def predict_text(
    models_dir: str,
    model_id: str,
    rows: list[dict[str, Any]] | None,
    data_source: str | None,
    signing_key_file: str,
) -> dict[str, Any]:
    """Labels and per-label probabilities for texts given as rows ({text_column: ...}) or a data file."""
    root, meta = _verified(models_dir, model_id, signing_key_file)
    _check_kind(meta, "text_classification_finetune", "predict")
    column = str(meta["parameters"]["text_column"])
    if rows is not None:
        bad = [i for i, r in enumerate(rows) if not isinstance(r.get(column), str)]
        if bad:
            raise InvalidInputError(
                f"Row {bad[0]} has no text in {column!r}.", f"Send rows like {{{column!r}: 'some text'}}."
            )
        extra = sorted({k for r in rows for k in r} - {column})
        if extra:
            raise InvalidInputError(
                f"Rows have columns the model does not read: {extra}.", f"Send only {column!r}."
            )
        texts = [str(r[column]) for r in rows]
    else:
        assert data_source is not None
        texts = read_texts(data_source, [column], drop_na_text=False, max_rows=_MAX_TEXTS)[column].tolist()
    if len(texts) > _MAX_TEXTS:
        raise InvalidInputError(f"More than the {_MAX_TEXTS} texts one call predicts.", "Split them.")
    model, tokenizer = _load(root, meta, causal=False)
    limit = int(meta["parameters"]["max_seq_length"])
    labels: list[str] = list(meta["classes"])
    out_labels: list[str] = []
    probabilities: list[list[float]] = []
    with torch.no_grad():
        for start in range(0, len(texts), _BATCH):
            enc = tokenizer(
                texts[start : start + _BATCH],
                truncation=True,
                max_length=limit,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**{k: v.to(_device()) for k, v in enc.items()}).logits.float()
            proba = torch.softmax(logits, dim=-1).cpu()
            out_labels += [labels[i] for i in proba.argmax(dim=-1).tolist()]
            probabilities += [[round(float(p), 6) for p in row] for row in proba.tolist()]
    return {
        "model_id": model_id,
        "n_rows": len(texts),
        "predictions": out_labels,
        "classes": labels,
        "probabilities": probabilities,
    }


def generate(
    models_dir: str,
    model_id: str,
    prompt: str,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    *,
    signing_key_file: str,
) -> dict[str, Any]:
    """A completion of `prompt` by a causal LM fine-tune (greedy when temperature is 0)."""
    root, meta = _verified(models_dir, model_id, signing_key_file)
    _check_kind(meta, "causal_lm_finetune", "generate")
    model, tokenizer = _load(root, meta, causal=True)
    torch.manual_seed(seed)
    enc = tokenizer(prompt, return_tensors="pt").to(_device())
    sample = temperature > 0
    with torch.no_grad(), quiet_hf():
        out = model.generate(  # type: ignore[operator]
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[0, enc["input_ids"].shape[1] :]
    stopped = bool(len(new) and int(new[-1]) == tokenizer.eos_token_id)
    return {
        "model_id": model_id,
        "prompt": prompt,
        "completion": tokenizer.decode(new, skip_special_tokens=True),
        "n_new_tokens": len(new),
        "finished": stopped or len(new) < max_new_tokens,
    }
