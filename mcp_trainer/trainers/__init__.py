"""Trainers: one module per family of task types behind the `Trainer` interface (see base.py).

Only `base` and `registry` are light; the trainer modules import scikit-learn and friends and are loaded
in worker processes alone.
"""
