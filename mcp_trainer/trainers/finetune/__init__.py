"""PyTorch fine-tunes of Hugging Face models (needs the `torch` extra)."""
