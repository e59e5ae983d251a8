"""What a task leaves behind: `trained_models/<model_id>/` (model_dir.py) and its report (reports.py)."""
