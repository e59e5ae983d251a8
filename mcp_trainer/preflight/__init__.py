"""Checks of a task's data and model before the task exists, in the server process, with the standard
library only: `readers` (file formats), `tabular` (scikit-learn tasks), `finetune` (fine-tunes)."""
