"""Fine-tunes in this process: the trainer end to end, the loop's retries and divergence, checkpoints, resume.

Real worker processes (cancel, SIGKILL) are in test_finetune_processes.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import expected_device, lm_csv, make_bert, make_gpt2, sentiment_csv
from torch import nn

from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.engine.failures import classify_exception
from mcp_trainer.preflight.finetune import check_finetune
from mcp_trainer.records import ErrorKind, TaskRecord, TaskResult
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.trainers.base import StopRequested, WorkerContext
from mcp_trainer.trainers.finetune.checkpoints import CheckpointStore
from mcp_trainer.trainers.finetune.data import Collated, Examples, collate, tokenize
from mcp_trainer.trainers.finetune.loop import (
    Divergence,
    EvalResult,
    LoopConfig,
    LoopState,
    OutOfMemory,
    epoch_order,
    make_optimizer,
    make_scheduler,
    run_loop,
)
from mcp_trainer.trainers.finetune.trainer import FinetuneTrainer

TASK_ID = "task_20261122T120000_0000abcd"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    return {"bert": make_bert(root / "bert"), "gpt2": make_gpt2(root / "gpt2")}


def run_trainer(
    tmp: Path,
    spec: dict[str, Any],
    *,
    stop_at_step: int | None = None,
    finish_at_step: int | None = None,
    work: str = "work",
    keep: list[WorkerContext] | None = None,
) -> tuple[TaskResult, list[dict[str, Any]]]:
    """Run a fine-tune in this process, then the work it left for after its result (as the worker does),
    unless `keep` is given: the context is appended to it instead, with that work still to do."""
    checked = check_finetune(FinetuneSpec.model_validate(spec))
    record = TaskRecord(task_id=TASK_ID, spec=checked)
    sent: list[dict[str, Any]] = []
    stop, finish = threading.Event(), threading.Event()

    def send(message: tuple[str, dict[str, Any]]) -> None:
        sent.append(message[1])
        training = message[1].get("training") or {}
        if stop_at_step is not None and training.get("step", 0) >= stop_at_step:
            stop.set()
        if finish_at_step is not None and training.get("step", 0) >= finish_at_step:
            finish.set()

    ctx = WorkerContext(
        record=record,
        models_dir=tmp / "models",
        work_dir=tmp / work,
        send=send,
        stop_event=stop,
        signer=ModelSigner(tmp / "signing.key"),
        finish_event=finish,
        min_interval_s=0,
    )
    result = FinetuneTrainer().run(ctx)
    if keep is None:
        ctx.run_after_result()
    else:
        keep.append(ctx)
    return result, sent


def test_a_fine_tunes_model_is_saved_before_its_loss_curve_which_is_drawn_after_the_result(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    data = sentiment_csv(tmp_path / "reviews.csv", rows=48)
    kept: list[WorkerContext] = []
    result, _ = run_trainer(tmp_path, cls_spec(models["bert"], data, epochs=1), keep=kept)
    model_dir = Path(result.model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["plots"]["state"] == "drawing" and meta["plots"]["pending"] == ["loss_curve"]
    assert not (model_dir / "reports" / "loss_curve.png").exists()
    assert (model_dir / "reports" / "loss_history.csv").exists()

    kept[0].run_after_result()
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["plots"]["state"] == "drawn" and meta["plots"]["files"] == ["loss_curve.png"]
    assert (model_dir / "reports" / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def cls_spec(model: Path, data: Path, **extra: Any) -> dict[str, Any]:
    return {
        "task_type": "text_classification_finetune",
        "model_path": str(model),
        "data_source": str(data),
        "epochs": 6,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "eval_split": 0.25,
        **extra,
    }


def test_a_text_classification_fine_tune_learns_and_saves_a_model_from_pretrained_loads(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = sentiment_csv(tmp_path / "reviews.csv", rows=96)
    # 10 epochs: this tiny model's loss sits near ln 2 for ~30 steps before it falls (to ~0.2 by step 54 on
    # the CPU, ~0.35 on an H100, whose kernels take another path out of the plateau).
    result, sent = run_trainer(tmp_path, cls_spec(models["bert"], data, epochs=10))

    steps = [m["training"] for m in sent if m.get("training")]
    assert steps[-1]["step"] == steps[-1]["total_steps"] == 10 * 9  # 72 train rows / 8 per step
    assert all(
        s["samples_per_s"] > 0 and s["tokens_per_s"] > 0 and s["device"] == expected_device() for s in steps
    )
    # It learned (the label is given away by one word): the last epoch's mean loss is under half the first's.
    first, last = (sum(s["loss"] for s in epoch) / 9 for epoch in (steps[:9], steps[-9:]))
    assert last < first / 2
    assert result.metrics["accuracy"] >= 0.9
    model_dir = Path(result.model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["classes"] == ["neg", "pos"] and meta["method"] == "full"
    assert set(meta["model_files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert (model_dir / "reports" / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(**tokenizer(["the film was great", "the film was awful"], return_tensors="pt")).logits
    assert [model.config.id2label[i] for i in logits.argmax(-1).tolist()] == ["pos", "neg"]


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft calls a deprecated API
def test_lora_trains_only_adapters_and_saves_an_adapter_peft_loads(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    from peft import AutoPeftModelForSequenceClassification

    data = sentiment_csv(tmp_path / "reviews.csv", rows=48)
    result, _ = run_trainer(tmp_path, cls_spec(models["bert"], data, method="lora", epochs=2, lora_r=4))

    model_dir = Path(result.model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["method"] == "lora" and meta["training"]["learning_rate"] == 3e-3  # as given
    assert meta["training"]["trainable_parameters"] < meta["training"]["total_parameters"] / 2
    assert (model_dir / "adapter_config.json").is_file() and (
        model_dir / "adapter_model.safetensors"
    ).is_file()
    assert not (model_dir / "model.safetensors").exists()
    loaded = AutoPeftModelForSequenceClassification.from_pretrained(str(model_dir))
    assert loaded.peft_config["default"].r == 4


def test_a_causal_lm_fine_tune_on_prompts_and_completions_lowers_the_loss(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    data = lm_csv(tmp_path / "qa.csv", rows=48, prompts=True)
    spec = {
        "task_type": "causal_lm_finetune",
        "model_path": str(models["gpt2"]),
        "data_source": str(data),
        "prompt_column": "prompt",
        "completion_column": "completion",
        "epochs": 4,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "method": "full",
    }
    result, sent = run_trainer(tmp_path, spec)

    losses = [m["training"]["loss"] for m in sent if m.get("training")]
    assert losses[-1] < losses[0]
    assert result.metrics["perplexity"] > 1.0 and "eval_loss" in result.metrics


def test_prompt_tokens_are_left_out_of_the_causal_lm_loss(models: dict[str, Path]) -> None:
    import pandas as pd
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models["gpt2"])
    spec = FinetuneSpec(
        task_type="causal_lm_finetune",
        model_path=str(models["gpt2"]),
        data_source="x.csv",
        prompt_column="p",
        completion_column="c",
    )
    examples, cut = tokenize(
        tokenizer, spec, pd.DataFrame({"p": ["question : good ?"], "c": ["answer : good ."]}), None
    )
    ids, labels = examples.input_ids[0], examples.labels[0]
    assert isinstance(labels, list) and len(ids) == len(labels) and cut == 0
    prompt_len = len(tokenizer("question : good ?")["input_ids"])
    assert labels[:prompt_len] == [-100] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]  # the completion and its end-of-sequence token


# -- the loop ---------------------------------------------------------------------------------------------


class _Tiny(nn.Module):
    """A linear classifier whose forward fails like CUDA does when a micro-batch is too large."""

    def __init__(self, oom_above: int | None = None, nan_at_call: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.EmbeddingBag(50, 8, mode="sum")
        self.out = nn.Linear(8, 2)
        self.oom_above, self.nan_at_call, self.calls, self.sizes = oom_above, nan_at_call, 0, []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> Any:
        self.calls += 1
        self.sizes.append(len(input_ids))
        if self.oom_above is not None and len(input_ids) > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        logits = self.out(self.emb(input_ids, per_sample_weights=attention_mask.float()))
        loss = nn.functional.cross_entropy(logits, labels)
        if self.nan_at_call is not None and self.calls >= self.nan_at_call:
            loss = loss * float("nan")
        return type("Out", (), {"loss": loss})()


class _Hooks:
    def __init__(self, examples: Examples) -> None:
        self.examples = examples
        self.saved: list[int] = []

    def collate(self, indices: Sequence[int]) -> Collated:
        return collate(self.examples, indices, 0, causal=False)

    def evaluate(self, model: nn.Module) -> EvalResult:
        return EvalResult(0.0, 0.0, {})

    def save_checkpoint(self, state: LoopState, reason: str) -> None:
        self.saved.append(state.step)

    def save_best(self, state: LoopState) -> None:
        pass

    def progress(self, state: LoopState, stats: dict[str, float]) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def should_finish(self) -> bool:
        return False


def _examples(n: int = 32) -> Examples:
    gen = torch.Generator().manual_seed(1)
    ids = [torch.randint(1, 50, (6,), generator=gen).tolist() for _ in range(n)]
    return Examples(ids, [i % 2 for i in range(n)])


def _train(model: _Tiny, batch: int, accumulation: int, steps: int = 4, retries: int = 3) -> LoopState:
    cfg = LoopConfig(
        batch_size=batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=0.1,
        total_steps=steps,
        steps_per_epoch=2,
        max_oom_retries=retries,
    )
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, "constant", 0, steps)
    return run_loop(
        model,
        optimizer,
        scheduler,
        _Hooks(_examples()),
        LoopState(),
        cfg,
        32,
        torch.device("cpu"),
        has_eval=False,
    )


def test_out_of_memory_retries_with_half_the_micro_batch_and_keeps_the_effective_batch() -> None:
    flaky = _Tiny(oom_above=4)
    state = _train(flaky, batch=16, accumulation=1)
    reference = _Tiny()
    _train(reference, batch=4, accumulation=4)

    assert state.oom_retries == 2 and state.micro_batch == 4  # 16 -> 8 -> 4
    assert state.samples_seen == 4 * 16  # every optimizer step still saw 16 examples
    for a, b in zip(flaky.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # the same updates as micro-batches of 4 from the start


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a GPU machine)")
def test_a_real_cuda_out_of_memory_is_retried_with_a_smaller_micro_batch_and_the_fine_tune_completes(
    tmp_path: Path,
) -> None:
    model = make_bert(tmp_path / "bert", hidden=128, layers=2)
    data = sentiment_csv(tmp_path / "long.csv", rows=1024, filler=250)  # ~250 tokens per example
    # Leave ~1.5 GiB of the GPU free: a micro-batch of 1024 such examples needs several GiB, 256 fit.
    free, _ = torch.cuda.mem_get_info()
    blocker = torch.empty(max(0, free - 3 * 2**29), dtype=torch.uint8, device="cuda")
    try:
        result, sent = run_trainer(
            tmp_path,
            cls_spec(
                model, data, batch_size=1024, max_steps=2, max_seq_length=256, eval_split=0, max_oom_retries=8
            ),
        )
    finally:
        del blocker
        torch.cuda.empty_cache()

    training = json.loads((Path(result.model_dir) / "metadata.json").read_text())["training"]
    assert training["oom_retries"] >= 1 and training["final_micro_batch"] < 1024
    assert training["steps"] == 2 and training["device"].startswith("cuda:0")
    reported = [m["training"] for m in sent if m.get("training")]
    assert reported[-1]["micro_batch"] == training["final_micro_batch"]
    assert result.metrics["train_loss"] > 0


def test_out_of_memory_past_the_retry_limit_fails_as_out_of_memory() -> None:
    with pytest.raises(OutOfMemory) as info:
        _train(_Tiny(oom_above=1), batch=16, accumulation=1, retries=2)
    assert info.value.retries == 2 and info.value.micro_batch == 4


def test_a_nan_loss_fails_as_divergence_naming_the_step() -> None:
    with pytest.raises(Divergence) as info:
        _train(_Tiny(nan_at_call=3), batch=16, accumulation=1)
    assert info.value.step == 3 and "NaN at step 3" in str(info.value)


def test_a_fine_tune_whose_loss_turns_nan_fails_as_divergence_with_a_hint(tmp_path: Path) -> None:
    from transformers import BertModel

    broken = make_bert(tmp_path / "broken")
    model = BertModel.from_pretrained(broken)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[2] = float("inf")  # [CLS], which starts every example
    model.save_pretrained(broken)
    data = sentiment_csv(tmp_path / "reviews.csv", rows=32)
    with pytest.raises(Exception) as info:
        run_trainer(tmp_path, cls_spec(broken, data))
    error = classify_exception(info.value)
    assert error.kind is ErrorKind.DIVERGENCE
    assert "NaN at step 1" in error.message
    assert error.hint is not None and "learning_rate" in error.hint


def test_the_data_order_depends_only_on_seed_and_epoch() -> None:
    assert epoch_order(100, 42, 3) == epoch_order(100, 42, 3)
    assert epoch_order(100, 42, 3) != epoch_order(100, 42, 4)
    assert sorted(epoch_order(100, 42, 3)) == list(range(100))


# -- checkpoints and resume -------------------------------------------------------------------------------


def test_checkpoints_keep_the_last_few_and_a_torn_one_falls_back_to_the_one_before(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for step in (1, 2, 3):
        store.save(step, {"step": step, "x": torch.ones(3) * step})
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-000000002.pt", "step-000000003.pt"]
    newest = tmp_path / "step-000000003.pt"
    newest.write_bytes(newest.read_bytes()[:40])  # a torn write
    latest = store.latest()
    assert latest is not None and latest["step"] == 2


class _RunsCode:
    """Unpickling this creates a file: what a planted checkpoint would do with a full unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_a_checkpoint_planted_in_the_work_folder_is_never_unpickled(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", keep=2)
    store.save(1, {"step": 1, "weights": {"w": torch.ones(2)}})
    marker = tmp_path / "code_ran"
    torch.save({"step": 9, "weights": _RunsCode(marker)}, tmp_path / "checkpoints" / "step-000000009.pt")
    latest = store.latest()
    assert latest is not None and latest["step"] == 1  # the planted one does not load; the one before does
    assert not marker.exists()


def test_a_stopped_fine_tune_resumes_from_its_checkpoint_and_ends_with_the_same_weights(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    data = sentiment_csv(tmp_path / "reviews.csv", rows=48)
    spec = cls_spec(models["bert"], data, epochs=2, checkpoint_every_steps=2)  # 36 rows: 5 steps per epoch

    straight, _ = run_trainer(tmp_path / "a", spec)
    with pytest.raises(StopRequested):
        run_trainer(tmp_path / "b", spec, stop_at_step=3)  # checkpoint at step 2, stopped during step 4
    resumed, sent = run_trainer(tmp_path / "b", spec)

    steps = [m["training"]["step"] for m in sent if m.get("training")]
    assert steps[0] == 3 and steps[-1] == 10  # the step count continued from the checkpoint of step 2
    assert not (tmp_path / "b" / "work" / "checkpoints").exists()  # removed once the model was saved
    assert any("resumed at step 2" in (m.get("message") or "") for m in sent)
    a = load_file(Path(straight.model_dir) / "model.safetensors")
    b = load_file(Path(resumed.model_dir) / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)  # same data order, same RNG


def test_a_model_directory_whose_weights_do_not_load_fails_as_a_data_error_with_the_reason(
    tmp_path: Path,
) -> None:
    broken = make_bert(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    data = sentiment_csv(tmp_path / "reviews.csv", rows=32)
    with pytest.raises(Exception) as info:
        run_trainer(tmp_path, cls_spec(broken, data))
    error = classify_exception(info.value)
    assert error.kind is ErrorKind.DATA_ERROR
    assert "does not load" in error.message and str(broken) in error.message
    assert error.hint is not None and "save_pretrained" in error.hint


def test_a_finish_request_ends_a_fine_tune_at_the_next_step_and_saves_its_model(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    data = sentiment_csv(tmp_path / "reviews.csv", rows=96)
    result, _ = run_trainer(tmp_path, cls_spec(models["bert"], data, epochs=20), finish_at_step=5)
    meta = json.loads((Path(result.model_dir) / "metadata.json").read_text())
    assert meta["training"]["stopped_early"] == "stop_requested"
    assert 5 <= meta["training"]["steps"] < meta["training"]["total_steps"]
    assert (Path(result.model_dir) / "model.safetensors").is_file()
    assert "accuracy" in result.metrics


def test_without_early_stopping_the_last_weights_are_kept_and_the_status_says_the_same_as_the_metrics(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    # Keeping "the best" silently, with accuracy tied at 1.0, saved the first epoch's weights while the
    # status's eval_metric and the result's accuracy disagreed about which weights were kept.
    data = sentiment_csv(tmp_path / "reviews.csv", rows=96)
    result, sent = run_trainer(tmp_path, cls_spec(models["bert"], data, epochs=4))
    last = [m["training"] for m in sent if m.get("training")][-1]
    assert last["kept_step"] == last["step"] == last["total_steps"]
    assert last["eval_metric"] == result.metrics["accuracy"]
    assert last["eval_loss"] == result.metrics["eval_loss"]
    meta = json.loads((Path(result.model_dir) / "metadata.json").read_text())
    assert meta["kept_weights"] == {"policy": "last", "step": last["step"]}
    summary = (Path(result.model_dir) / "reports" / "summary.md").read_text()
    assert f"Weights kept: step {last['step']}, the last" in summary


def test_keeping_the_best_breaks_a_tie_of_the_metric_by_the_lower_eval_loss() -> None:
    from mcp_trainer.trainers.finetune.loop import _evaluate

    cfg = LoopConfig(
        batch_size=1,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        total_steps=10,
        steps_per_epoch=1,
        higher_is_better=True,
    )
    results = iter(
        [
            EvalResult(0.3, 0.9, {}),
            EvalResult(0.2, 1.0, {}),
            EvalResult(0.1, 1.0, {}),
            EvalResult(0.4, 1.0, {}),
        ]
    )

    class Hooks(_Hooks):
        def evaluate(self, model: nn.Module) -> EvalResult:
            return next(results)

    state = LoopState()
    for step in range(1, 5):
        state.step = step
        _evaluate(nn.Linear(1, 1), Hooks(_examples()), state, cfg)
    assert state.best_step == 3 and state.best_metric == 1.0 and state.best_loss == 0.1
