"""MCP tools for PyTorch fine-tunes: submit one, and generate with a causal LM fine-tune."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from mcp_trainer.finetune_preflight import MAX_NEW_TOKENS
from mcp_trainer.finetune_specs import FinetuneTaskType
from mcp_trainer.server_common import SubmitResult, service_of, submitted, tool_errors
from mcp_trainer.service import TrainingService
from mcp_trainer.views import Generation

__all__ = ["register_finetune_tools"]


def register_finetune_tools(server: MCPServer[TrainingService]) -> None:
    @server.tool()
    async def submit_finetune_task(
        ctx: Context,
        task_type: Annotated[
            FinetuneTaskType,
            Field(
                description="text_classification_finetune: a classifier from a text and a label column. "
                "causal_lm_finetune: a language model trained on text (or prompt + completion) pairs."
            ),
        ],
        model_path: Annotated[
            str, Field(description="Absolute path of a local Hugging Face model directory (save_pretrained).")
        ],
        data_source: Annotated[str, Field(description="Absolute path of a .csv, .tsv or .jsonl file.")],
        text_column: Annotated[str, Field(description="Column of input text.")] = "text",
        label_column: Annotated[
            str | None, Field(description="Classification: column of labels (default 'label').")
        ] = None,
        prompt_column: Annotated[
            str | None, Field(description="Causal LM: prompt column; the loss covers the completion only.")
        ] = None,
        completion_column: Annotated[str | None, Field(description="Causal LM: completion column.")] = None,
        method: Annotated[
            Literal["full", "lora"] | None,
            Field(description="full fine-tune or LoRA adapters; default full (classification), lora (LM)."),
        ] = None,
        lora_r: Annotated[int, Field(ge=1, le=256)] = 8,
        lora_alpha: Annotated[int, Field(ge=1, le=1024)] = 16,
        lora_target_modules: Annotated[
            list[str] | None, Field(description="Layers to adapt; default: the model type's attention.")
        ] = None,
        replace_head: Annotated[
            bool, Field(description="Train a new classification head when the model's head has other labels.")
        ] = False,
        epochs: Annotated[int, Field(ge=1, le=1000)] = 3,
        max_steps: Annotated[int | None, Field(ge=1, description="Stop after this many steps.")] = None,
        batch_size: Annotated[int, Field(ge=1, le=4096)] = 16,
        gradient_accumulation_steps: Annotated[int, Field(ge=1, le=1024)] = 1,
        learning_rate: Annotated[
            float | None,
            Field(gt=0, le=1, description="Default 5e-05 for a full fine-tune, 0.0002 for LoRA."),
        ] = None,
        lr_scheduler: Literal["linear", "cosine", "constant"] = "linear",
        warmup_ratio: Annotated[float, Field(ge=0, le=0.5)] = 0.0,
        weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0,
        max_seq_length: Annotated[int, Field(ge=8, le=32768)] = 128,
        eval_split: Annotated[float, Field(ge=0, le=0.5, description="Share held out for evaluation.")] = 0.1,
        eval_data_source: Annotated[str | None, Field(description="A separate eval file instead.")] = None,
        eval_metric: Annotated[
            Literal["eval_loss", "accuracy", "f1_macro", "perplexity"] | None,
            Field(description="What early stopping watches; default accuracy / eval_loss."),
        ] = None,
        eval_every_steps: Annotated[int | None, Field(ge=1, description="Default: every epoch.")] = None,
        early_stopping_patience: Annotated[
            int | None, Field(ge=1, description="Evaluations without improvement before stopping.")
        ] = None,
        precision: Annotated[
            Literal["auto", "fp32", "bf16"], Field(description="auto: bf16 autocast on a GPU that has it.")
        ] = "auto",
        seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42,
        checkpoint_every_steps: Annotated[
            int | None, Field(ge=1, description="Extra checkpoints; one is always taken per epoch.")
        ] = None,
        optimize_hyperparameters: Annotated[
            bool,
            Field(description="Search learning rate, batch size and epochs first (prunes on eval loss)."),
        ] = False,
        n_trials: Annotated[int, Field(ge=2, le=200)] = 8,
        timeout_s: Annotated[
            float | None, Field(gt=0, description="Stop training after this long and keep the model so far.")
        ] = None,
        user_id: Annotated[str | None, Field(max_length=200)] = None,
        priority: Literal["high", "normal", "low"] = "normal",
        name: Annotated[str | None, Field(max_length=200)] = None,
        max_attempts: Annotated[int, Field(ge=1, le=10)] = 3,
    ) -> SubmitResult:
        """Queue a fine-tune of a local Hugging Face model and return its task_id at once.

        Runs on the GPU when the machine has one (else the CPU); get_task_status shows epoch, step of
        total, loss, learning rate, samples/s, tokens/s and GPU memory. The model directory and data are
        checked first (missing files, unknown columns, an empty dataset, labels that do not fit the model's
        head are refused). A crashed or killed run resumes from its last checkpoint."""
        spec: dict[str, Any] = {
            k: v
            for k, v in {
                "task_type": task_type,
                "model_path": model_path,
                "data_source": data_source,
                "text_column": text_column,
                "label_column": label_column,
                "prompt_column": prompt_column,
                "completion_column": completion_column,
                "method": method,
                "lora_r": lora_r,
                "lora_alpha": lora_alpha,
                "lora_target_modules": lora_target_modules,
                "replace_head": replace_head,
                "epochs": epochs,
                "max_steps": max_steps,
                "batch_size": batch_size,
                "gradient_accumulation_steps": gradient_accumulation_steps,
                "learning_rate": learning_rate,
                "lr_scheduler": lr_scheduler,
                "warmup_ratio": warmup_ratio,
                "weight_decay": weight_decay,
                "max_seq_length": max_seq_length,
                "eval_split": eval_split,
                "eval_data_source": eval_data_source,
                "eval_metric": eval_metric,
                "eval_every_steps": eval_every_steps,
                "early_stopping_patience": early_stopping_patience,
                "precision": precision,
                "seed": seed,
                "checkpoint_every_steps": checkpoint_every_steps,
                "optimize_hyperparameters": optimize_hyperparameters,
                "n_trials": n_trials,
                "timeout_s": timeout_s,
            }.items()
            if v is not None
        }
        with tool_errors():
            view = await service_of(ctx).submit(
                spec, name=name, user_id=user_id, priority=priority, max_attempts=max_attempts
            )
        return submitted(view)

    @server.tool()
    async def generate(
        ctx: Context,
        model_id: Annotated[str, Field(description="A causal_lm_finetune model id from list_models.")],
        prompt: Annotated[str, Field(min_length=1, max_length=20_000, description="Text to continue.")],
        max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS)] = 64,
        temperature: Annotated[float, Field(ge=0, le=5, description="0 = greedy (deterministic).")] = 0.0,
        top_p: Annotated[float, Field(gt=0, le=1)] = 1.0,
        seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0,
    ) -> Generation:
        """A short completion of `prompt` by a causal LM fine-tune (runs in a separate process)."""
        with tool_errors():
            return await service_of(ctx).generate(
                model_id,
                prompt,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
            )
