"""Checks an evaluate task before it exists, from what the models' metadata says (the service reads it)
and the data file's header: every model is a tabular model, all of one kind, with one target to score
against, and the data holds every column each model needs (standard library only). A bundled dataset's
columns are checked by the worker, which loads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.preflight.readers import check_file, read_header
from mcp_trainer.specs.evaluate import EvaluateSpec
from mcp_trainer.specs.finetune import FINETUNE_TASK_TYPES
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.specs.spaces import TASK_FAMILIES

__all__ = ["ModelFacts", "check_evaluation", "check_evaluation_data"]


@dataclass(frozen=True)
class ModelFacts:
    """What an evaluation needs to know of a saved model, from its metadata.json."""

    model_id: str
    task_type: str
    features: list[str]
    targets: list[str]

    @property
    def kind(self) -> str | None:
        """classification or regression; None for a model no evaluation scores (a fine-tune)."""
        family = TASK_FAMILIES.get(self.task_type)
        return family[1] if family is not None else None


def check_evaluation(spec: EvaluateSpec, models: list[ModelFacts]) -> list[str]:
    """The columns of true values the models are scored against; raises InvalidInputError when the models
    cannot be scored together on `spec`'s data."""
    for model in models:
        if model.task_type in FINETUNE_TASK_TYPES:
            raise InvalidInputError(
                f"Model {model.model_id} is a {model.task_type} model; evaluate tasks score tabular "
                "(scikit-learn) models only.",
                "Score a fine-tuned text classifier with predict on a file of texts.",
            )
        if model.kind is None:
            raise InvalidInputError(
                f"Model {model.model_id} has task type {model.task_type!r}, which evaluate does not know.",
                "Evaluate models trained by submit_training_task.",
            )
    kinds = {m.kind for m in models}
    if len(kinds) > 1:
        listed = ", ".join(f"{m.model_id} ({m.kind})" for m in models)
        raise InvalidInputError(
            f"The models mix classifiers and regressors ({listed}); one comparison scores one kind.",
            "Evaluate the classifiers and the regressors in separate tasks.",
        )
    targets = spec.targets
    if targets is None:
        own = {tuple(m.targets) for m in models}
        if len(own) > 1:
            listed = ", ".join(f"{m.model_id}: {', '.join(m.targets)}" for m in models)
            raise InvalidInputError(
                f"The models predict different targets ({listed}).",
                "Name the column of true values in target_column.",
            )
        targets = list(models[0].targets)
    for model in models:
        if len(model.targets) != len(targets):
            raise InvalidInputError(
                f"Model {model.model_id} predicts {len(model.targets)} target(s) "
                f"({', '.join(model.targets)}); target_column names {len(targets)}.",
                "Name one column of true values per target the models predict.",
            )
    return targets


def check_evaluation_data(spec: EvaluateSpec, models: list[ModelFacts], targets: list[str]) -> None:
    """The data file exists and holds every feature each model needs and the columns of true values."""
    source = parse_source(spec.data_source)
    if source.path is None:
        return
    path: Path = source.path
    check_file(path, text=source.format != "parquet")
    header = set(read_header(path, source.format))
    missing_targets = [t for t in targets if t not in header]
    if missing_targets:
        raise InvalidInputError(
            f"The column(s) of true values {missing_targets} are not in {path.name}.",
            "Name the column that holds them in target_column.",
        )
    for model in models:
        missing = [f for f in model.features if f not in header]
        if missing:
            shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
            raise InvalidInputError(
                f"{path.name} lacks column(s) model {model.model_id} needs: {shown}.",
                "Score it on data with the columns it was trained on (get_model_info lists its features).",
            )
