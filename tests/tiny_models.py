"""Tiny Hugging Face models and datasets made on the spot, so fine-tune tests need no download."""

from __future__ import annotations

import csv
import random
from pathlib import Path

WORDS = [
    "good", "great", "fine", "love", "nice", "happy", "bad", "awful", "poor", "hate", "sad", "ugly",
    "the", "a", "movie", "film", "was", "is", "very", "really", "plot", "actor", "question", "answer",
]  # fmt: skip
POSITIVE = WORDS[:6]
NEGATIVE = WORDS[6:12]
FILLER = WORDS[12:]


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[EOS]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS + [":", "?", "."])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", vocab["[CLS]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        eos_token="[EOS]",
    )
    fast.save_pretrained(str(path))


def vocab_size() -> int:
    return 5 + len(WORDS) + 3


def make_bert(
    path: Path,
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A small BERT (base model, or a sequence classifier when num_labels is given) and its tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    config = BertConfig(
        vocab_size=vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    path.mkdir(parents=True, exist_ok=True)
    if num_labels is None:
        BertModel(config).save_pretrained(str(path))
    else:
        config.num_labels = num_labels
        if id2label is not None:
            config.id2label = id2label
            config.label2id = {v: k for k, v in id2label.items()}
        BertForSequenceClassification(config).save_pretrained(str(path))
    _tokenizer(path)
    return path


def make_gpt2(path: Path) -> Path:
    """A 2-layer GPT-2 causal LM and its tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size(),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=2,
        eos_token_id=4,
    )
    path.mkdir(parents=True, exist_ok=True)
    GPT2LMHeadModel(config).save_pretrained(str(path))
    _tokenizer(path)
    return path


def sentiment_csv(
    path: Path, rows: int = 64, seed: int = 0, labels: tuple[str, str] = ("neg", "pos"), filler: int = 3
) -> Path:
    """Short 'reviews' whose label is given away by one word: learnable in a few steps."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(rows):
            positive = i % 2 == 0
            words = [*rng.choices(FILLER, k=filler), rng.choice(POSITIVE if positive else NEGATIVE)]
            rng.shuffle(words)
            w.writerow([" ".join(words), labels[1] if positive else labels[0]])
    return path


def lm_csv(path: Path, rows: int = 48, seed: int = 0, *, prompts: bool = False) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "completion"] if prompts else ["text"])
        for _ in range(rows):
            word = rng.choice(POSITIVE)
            if prompts:
                w.writerow([f"question : {word} ?", f"answer : {word} ."])
            else:
                w.writerow([f"the movie was very {word} . the plot was {word} ."])
    return path


def expected_device() -> str:
    """The device name a fine-tune reports on this machine: its first GPU when it has one (a lent GPU
    machine runs these tests too), else the CPU."""
    import torch

    return f"cuda:0 ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
