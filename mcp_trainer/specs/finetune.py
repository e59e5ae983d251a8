"""What a caller asks for when fine-tuning a PyTorch model: one pydantic spec, validated before a task exists.

Light on purpose (pydantic only): the server validates these without importing torch or transformers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcp_trainer.specs.outputs import MODEL_OUTPUTS
from mcp_trainer.specs.sources import PathText

__all__ = ["FINETUNE_TASK_TYPES", "FinetuneSpec", "FinetuneTaskType"]

FinetuneTaskType = Literal["text_classification_finetune", "causal_lm_finetune"]
FINETUNE_TASK_TYPES: tuple[str, ...] = ("text_classification_finetune", "causal_lm_finetune")

FULL_LEARNING_RATE = 5e-5  # the default peak learning rate of a full fine-tune
LORA_LEARNING_RATE = 2e-4  # ... and of LoRA
BATCH_SIZES = (4, 8, 16, 32, 64)  # what the search may pick for batch_size
_DAY_S = 7 * 24 * 3600


class FinetuneSpec(BaseModel):
    """A fine-tune of a local Hugging Face model on a text dataset (CSV, TSV or JSON lines).

    Every field is a parameter of the `submit_finetune_task` tool, whose schema is generated from this
    model."""

    model_config = ConfigDict(extra="forbid")

    task_type: FinetuneTaskType = Field(
        description="text_classification_finetune: a classifier from a text and a label column. "
        "causal_lm_finetune: a language model on text, or prompt + completion pairs."
    )
    model_path: PathText = Field(
        description="Absolute path of a local Hugging Face model directory (save_pretrained)."
    )
    data_source: PathText = Field(description="Absolute path of a .csv, .tsv or .jsonl file.")
    text_column: str = Field(default="text", min_length=1, description="Column of input text.")
    label_column: str | None = Field(
        default=None, description="Classification: the column of labels; default 'label'."
    )
    prompt_column: str | None = Field(
        default=None, description="Causal LM: the prompt column; the loss covers the completion only."
    )
    completion_column: str | None = Field(
        default=None, description="Causal LM: the completion column, with prompt_column."
    )
    method: Literal["full", "lora"] | None = Field(
        default=None, description="full or LoRA adapters; default full to classify, lora for a causal LM."
    )
    replace_head: bool = Field(
        default=False, description="Classification: a new head when the model's head has other labels."
    )
    lora_r: Annotated[int, Field(ge=1, le=256)] = Field(default=8, description="LoRA rank.")
    lora_alpha: Annotated[int, Field(ge=1, le=1024)] = Field(default=16, description="LoRA scaling.")
    lora_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(default=0.05, description="LoRA dropout.")
    lora_target_modules: list[str] | None = Field(
        default=None, description="LoRA: modules to adapt; default the model type's attention."
    )
    epochs: Annotated[int, Field(ge=1, le=1000)] = Field(default=3, description="Passes over the data.")
    max_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None, description="Stop after this many optimizer steps (overrides epochs)."
    )
    batch_size: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=16, description="Examples per forward pass."
    )
    gradient_accumulation_steps: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=1, description="Forward passes per optimizer step."
    )
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] | None = Field(
        default=None,
        description=f"Peak rate; default {FULL_LEARNING_RATE:g} (full), {LORA_LEARNING_RATE:g} (LoRA).",
    )
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        default="linear", description="Decay after warm-up."
    )
    warmup_ratio: Annotated[float, Field(ge=0.0, le=0.5)] = Field(
        default=0.0, description="Share of steps warming up."
    )
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = Field(default=0.0, description="AdamW decay.")
    max_grad_norm: Annotated[float, Field(gt=0.0, le=1e6)] | None = Field(
        default=1.0, description="Gradient clipping; null: none."
    )
    max_seq_length: Annotated[int, Field(ge=8, le=32_768)] = Field(
        default=128, description="Tokens per example; longer is cut."
    )
    eval_split: Annotated[float, Field(ge=0.0, le=0.5)] = Field(
        default=0.1, description="Share held out for evaluation."
    )
    eval_data_source: PathText | None = Field(
        default=None, description="A separate eval file (overrides eval_split)."
    )
    eval_metric: Literal["eval_loss", "accuracy", "f1_macro", "perplexity"] | None = Field(
        default=None, description="Watched by early stopping and the search; default accuracy / eval_loss."
    )
    eval_every_steps: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Evaluate every N steps; default each epoch."
    )
    early_stopping_patience: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="Stop after N evaluations without improvement."
    )
    keep_weights: Literal["best", "last"] | None = Field(
        default=None,
        description="The weights saved: best evaluated (ties: lower eval loss) or last; default best "
        "with early stopping, else last.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto: bf16 autocast on a GPU that has it, else fp32."
    )
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(
        default=42, description="Seed of order and split."
    )
    checkpoint_every_steps: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Also checkpoint every N steps (always once an epoch)."
    )
    keep_checkpoints: Annotated[int, Field(ge=1, le=20)] = Field(default=2, description="Checkpoints kept.")
    max_oom_retries: Annotated[int, Field(ge=0, le=8)] = Field(
        default=3, description="Out-of-memory retries, each halving the micro-batch."
    )
    divergence_factor: Annotated[float, Field(gt=1.0)] = Field(
        default=1e3, description="Fail when the loss exceeds its start this many times."
    )
    optimize_hyperparameters: bool = Field(
        default=False, description="First search learning rate, batch size and epochs, pruning weak trials."
    )
    n_trials: Annotated[int, Field(ge=2, le=200)] = Field(default=8, description="Search trials.")
    timeout_s: Annotated[float, Field(gt=0, le=_DAY_S)] | None = Field(
        default=None, description="Stop training after this long and save the model so far."
    )

    @property
    def is_classification(self) -> bool:
        return self.task_type == "text_classification_finetune"

    @property
    def effective_method(self) -> Literal["full", "lora"]:
        return self.method or ("full" if self.is_classification else "lora")

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LEARNING_RATE if self.effective_method == "lora" else FULL_LEARNING_RATE

    @property
    def effective_label_column(self) -> str:
        return self.label_column or "label"

    @property
    def effective_metric(self) -> str:
        return self.eval_metric or ("accuracy" if self.is_classification else "eval_loss")

    @property
    def effective_keep_weights(self) -> Literal["best", "last"]:
        if self.keep_weights is not None:
            return self.keep_weights
        return "best" if self.early_stopping_patience is not None else "last"

    @property
    def has_eval(self) -> bool:
        return self.eval_data_source is not None or self.eval_split > 0

    @property
    def columns(self) -> list[str]:
        """The dataset columns this spec reads."""
        if self.is_classification:
            return [self.text_column, self.effective_label_column]
        if self.prompt_column is not None:
            assert self.completion_column is not None
            return [self.prompt_column, self.completion_column]
        return [self.text_column]

    @model_validator(mode="after")
    def _consistent(self) -> FinetuneSpec:
        if self.is_classification:
            if self.prompt_column or self.completion_column:
                raise ValueError("prompt_column and completion_column apply to causal_lm_finetune only")
            if self.eval_metric == "perplexity":
                raise ValueError(
                    "perplexity is a causal_lm_finetune metric; use accuracy, f1_macro or eval_loss"
                )
            if self.text_column == self.effective_label_column:
                raise ValueError("text_column and label_column name the same column")
        else:
            if self.label_column is not None:
                raise ValueError("label_column applies to text_classification_finetune only")
            if (self.prompt_column is None) != (self.completion_column is None):
                raise ValueError("give prompt_column and completion_column together")
            if self.eval_metric in ("accuracy", "f1_macro"):
                raise ValueError(
                    f"{self.eval_metric} is a classification metric; use eval_loss or perplexity"
                )
        if self.keep_weights == "best" and not self.has_eval:
            raise ValueError("keep_weights='best' needs an eval set: set eval_split > 0 or eval_data_source")
        if self.early_stopping_patience is not None and not self.has_eval:
            raise ValueError(
                "early_stopping_patience needs an eval set: set eval_split > 0 or eval_data_source"
            )
        if self.optimize_hyperparameters and not self.has_eval:
            raise ValueError(
                "optimize_hyperparameters prunes on eval loss: set eval_split > 0 or eval_data_source"
            )
        if self.method != "lora" and self.method is not None and self.lora_target_modules:
            raise ValueError("lora_target_modules applies to method='lora' only")
        return self

    def outputs(self) -> frozenset[str]:
        """The named outputs its result holds, which a later pipeline stage may refer to."""
        return MODEL_OUTPUTS
