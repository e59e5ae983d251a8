"""The `trained_models/<model_id>/` layout: model file, `metadata.json`, `reports/`.

A model directory is assembled under a temporary name and renamed into place in one step, so a
directory named like a model id is always complete. `metadata.json` records the sha256 of each model file
and a signature over them (signing.py): only a file whose hash matches and whose signature verifies may
ever be unpickled (pickle runs code when loaded). The file names in `metadata.json` are plain names inside
the model's directory; any other (`../..`, an absolute path) is refused before anything is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mcp_trainer.artifacts.signing import SIGNATURE_FIELD, ModelSigner
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.files import sha256_of
from mcp_trainer.ids import check_model_id

__all__ = [
    "METADATA_FILE",
    "MODEL_FILE",
    "REPORTS_DIR",
    "REPORT_PLOTS",
    "SCRIPT_OUTPUT_DIR",
    "SUMMARY_FILE",
    "TMP_PREFIX",
    "delete_model_dir",
    "list_metadata",
    "model_dir",
    "read_metadata",
    "save_model_dir",
    "save_model_tree",
    "sweep_unfinished",
    "verified_model_bytes",
    "verify_model_files",
]

MODEL_FILE = "model.pkl"
TMP_PREFIX = ".tmp-"  # a model directory being assembled: `.tmp-<model_id>-<pid>`
DELETING_PREFIX = ".deleting-"  # a model directory being removed: `.deleting-<model_id>-<pid>`
METADATA_FILE = "metadata.json"
REPORTS_DIR = "reports"
SCRIPT_OUTPUT_DIR = "output"  # a script task's model entry: the copy of its declared output directory
SUMMARY_FILE = "summary.md"
# The report plots a model may have, in the order a report shows them: name -> what it shows. Each is
# `reports/<name>.png`; a plot that does not apply or could not be drawn is absent (summary.md says why).
REPORT_PLOTS: dict[str, str] = {
    "optimization_history": "objective value of each search trial, with the best so far",
    "param_importances": "how much each searched hyperparameter mattered (fANOVA)",
    "confusion_matrix": "held-out counts of true class against predicted class",
    "roc_curve": "held-out ROC curve (one-vs-rest per class when there are more than two)",
    "pr_curve": "held-out precision-recall curve (one-vs-rest per class when there are more than two)",
    "predicted_vs_actual": "held-out predictions against true values, per target",
    "residuals": "held-out residuals (true - predicted) against predictions, per target",
    "feature_importances": "held-out drop in score when each input column is shuffled (permutation)",
    "loss_curve": "a fine-tune's training loss per optimizer step, with the eval loss at each evaluation",
}


def model_dir(models_dir: Path, model_id: str) -> Path:
    return Path(models_dir) / check_model_id(model_id)


def read_metadata(models_dir: Path, model_id: str) -> dict[str, Any]:
    """The metadata of a saved model; raises InvalidInputError if there is no such model."""
    path = model_dir(models_dir, model_id) / METADATA_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(
            f"No model {model_id} in {models_dir}.", "A completed task's status names its model id."
        ) from None
    return data


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder of `root`, the files at once: the file system then commits them
    together (one journal commit rather than one each), which on a busy disk is most of a save's time.
    The folders follow their files."""
    paths = list(root.rglob("*"))
    files = [p for p in paths if not p.is_dir()]
    with ThreadPoolExecutor(max_workers=min(8, len(files) or 1), thread_name_prefix="fsync") as pool:
        list(pool.map(_fsync, files))
    for path in [*(p for p in paths if p.is_dir()), root]:
        _fsync(path)


def save_model_dir(
    models_dir: Path,
    model_id: str,
    write_model: Callable[[Path], None],
    metadata: Mapping[str, Any],
    reports: Mapping[str, str | bytes],
    signer: ModelSigner,
) -> Path:
    """Write a complete model directory atomically and return its path.

    `write_model(path)` writes the model file; its sha256 is added to the metadata as `model_sha256`,
    signed by `signer`.
    """

    def write(tmp: Path) -> dict[str, Any]:
        write_model(tmp / MODEL_FILE)
        digest = sha256_of(tmp / MODEL_FILE)
        return {
            "model_file": MODEL_FILE,
            "model_sha256": digest,
            SIGNATURE_FIELD: signer.sign(model_id, {MODEL_FILE: digest}),
        }

    return _assemble(models_dir, model_id, write, metadata, reports)


def save_model_tree(
    models_dir: Path,
    model_id: str,
    write_files: Callable[[Path], None],
    metadata: Mapping[str, Any],
    reports: Mapping[str, str | bytes],
    signer: ModelSigner,
) -> Path:
    """Like `save_model_dir` for a model made of several files (a Hugging Face directory).

    `write_files(dir)` writes them into the model directory itself, so that `from_pretrained(dir)` loads
    it; the sha256 of each is added to the metadata as `model_files`, signed by `signer`.
    """

    def write(tmp: Path) -> dict[str, Any]:
        write_files(tmp)
        files = {
            str(p.relative_to(tmp)): sha256_of(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and p.relative_to(tmp).parts[0] != REPORTS_DIR
        }
        return {"model_files": files, SIGNATURE_FIELD: signer.sign(model_id, files)}

    return _assemble(models_dir, model_id, write, metadata, reports)


def _assemble(
    models_dir: Path,
    model_id: str,
    write: Callable[[Path], dict[str, Any]],
    metadata: Mapping[str, Any],
    reports: Mapping[str, str | bytes],
) -> Path:
    final = model_dir(models_dir, model_id)
    tmp = final.with_name(f"{TMP_PREFIX}{model_id}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / REPORTS_DIR).mkdir(parents=True)
    try:
        meta = {**metadata, **write(tmp)}
        for name, content in reports.items():
            target = tmp / REPORTS_DIR / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        _fsync_tree(tmp)
        if final.exists():  # left by an earlier attempt of the same task that did not record its result
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return final


def verify_model_files(models_dir: Path, model_id: str, signer: ModelSigner) -> tuple[Path, dict[str, Any]]:
    """The directory and metadata of a multi-file model whose files all match their recorded sha256,
    with a signature that verifies."""
    meta = read_metadata(models_dir, model_id)
    root = model_dir(models_dir, model_id)
    files = meta.get("model_files")
    if not isinstance(files, dict) or not files:
        raise InvalidInputError(f"Model {model_id} records no model files.", "Train it again.")
    for name, expected in files.items():
        path = _inside(root, name, model_id)
        if not path.is_file() or path.is_symlink() or sha256_of(path) != expected:
            raise InvalidInputError(
                f"The file {name} of model {model_id} is missing or does not match the sha256 in its "
                "metadata; it was changed after training and will not be loaded.",
                "Train the model again.",
            )
    _check_signature(signer, model_id, files, meta)
    return root, meta


def _inside(root: Path, name: object, model_id: str) -> Path:
    """`root / name` for a file name from metadata.json that stays inside the model directory."""
    parts = Path(str(name)).parts
    if not isinstance(name, str) or not parts or Path(name).is_absolute() or ".." in parts:
        raise InvalidInputError(
            f"Model {model_id}'s metadata names the file {str(name)[:200]!r}, outside its directory; "
            "it will not be loaded.",
            "Its metadata.json was changed after training: train the model again.",
        )
    return root / name


def _check_signature(
    signer: ModelSigner, model_id: str, hashes: dict[str, Any], meta: dict[str, Any]
) -> None:
    signature = meta.get(SIGNATURE_FIELD)
    if signature is None:
        raise InvalidInputError(
            f"Model {model_id} is not signed (saved by an mcp-trainer before 0.6, or copied from elsewhere); "
            "it is not loaded, because loading a model file can run code.",
            "Train it again with this server.",
        )
    if not signer.verify(model_id, {str(k): str(v) for k, v in hashes.items()}, signature):
        raise InvalidInputError(
            f"Model {model_id}'s signature does not verify: its files or metadata were changed after "
            f"training, or it was signed with another key than {signer.key_file}. It will not be loaded.",
            "Train the model again (or point the server at the queue whose key signed it).",
        )


def list_metadata(models_dir: Path) -> list[dict[str, Any]]:
    """The metadata of every complete model directory (newest first); unreadable ones are skipped."""
    out: list[dict[str, Any]] = []
    root = Path(models_dir)
    if not root.is_dir():
        return out
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue  # a directory still being assembled
        try:
            data = json.loads((entry / METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("model_id") == entry.name:
            out.append(data)
    out.sort(key=lambda m: (m.get("created_at") or 0, m["model_id"]), reverse=True)
    return out


def delete_model_dir(models_dir: Path, model_id: str) -> None:
    """Remove a model directory; raises InvalidInputError if there is no such model."""
    path = model_dir(models_dir, model_id)
    if not (path / METADATA_FILE).is_file():
        raise InvalidInputError(
            f"No model {model_id} in {models_dir}.", "list_models shows the models that exist."
        )
    # Rename first so that a reader never sees a half-deleted model under its id.
    doomed = path.with_name(f"{DELETING_PREFIX}{model_id}-{os.getpid()}")
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def verified_model_bytes(
    models_dir: Path, model_id: str, signer: ModelSigner
) -> tuple[bytes, dict[str, Any]]:
    """The content of a saved model's file and its metadata, once the content's sha256 matches the
    metadata and the signature verifies.

    Only such content may be unpickled (pickle runs code when loaded); the caller loads it, in a worker,
    from these bytes (never from the file again, which could have been replaced since it was checked).
    """
    meta = read_metadata(models_dir, model_id)
    name = meta.get("model_file", MODEL_FILE)
    root = model_dir(models_dir, model_id)
    path = _inside(root, name, model_id)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        if not root.exists():  # delete_model ran since the metadata was read
            raise InvalidInputError(
                f"Model {model_id} was deleted while this call was reading it.",
                "list_models shows the models.",
            ) from None
        raise InvalidInputError(f"Model {model_id} has no model file.", "Train it again.") from None
    expected = meta.get("model_sha256")
    if not isinstance(expected, str) or hashlib.sha256(data).hexdigest() != expected:
        raise InvalidInputError(
            f"The model file of {model_id} does not match the sha256 in its metadata; it was changed after "
            "training and will not be loaded.",
            "Train the model again (a pickle runs code when loaded, so a changed file is never trusted).",
        )
    _check_signature(signer, model_id, {str(name): expected}, meta)
    return data, meta


def sweep_unfinished(models_dir: Path, is_alive: Callable[[int], bool], older_than_s: float) -> int:
    """Remove model directories left half-assembled or half-deleted by a process that is no longer
    alive (`is_alive(pid)`), or untouched for more than `older_than_s`; returns how many."""
    root = Path(models_dir)
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        if not entry.name.startswith((TMP_PREFIX, DELETING_PREFIX)):
            continue
        pid = entry.name.rpartition("-")[2]
        alive = pid.isdigit() and is_alive(int(pid))
        try:
            old = time.time() - entry.lstat().st_mtime > older_than_s
        except FileNotFoundError:
            continue
        if not alive or old:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
