"""The directories a caller's paths must resolve under: data files under the data roots, the models a
fine-tune starts from under the model roots. With no roots, any path the server's user can read goes.
Scripts are the other way round: with no script directories (`--allow-scripts-from`), no script runs
(preflight/script.py checks a script task's paths against them). The server's own data
(`queue/datasets/`, what preprocess tasks write for later stages) is always readable as data: it holds only
files the server wrote.

Paths are resolved with their links followed before the check, so a link inside a root that points out
of it is refused; the check comes before anything is read, so a refusal says nothing about the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcp_trainer.errors import InvalidInputError

__all__ = ["Roots"]


@dataclass(frozen=True)
class Roots:
    data: tuple[Path, ...] = ()
    models: tuple[Path, ...] = ()
    scripts: tuple[Path, ...] = ()  # where a script task's files may come from; none: scripts are off
    own: tuple[Path, ...] = ()  # the server's own data directories, readable whatever `data` says

    @classmethod
    def of(
        cls,
        data: tuple[str | Path, ...] = (),
        models: tuple[str | Path, ...] = (),
        scripts: tuple[str | Path, ...] = (),
        own: tuple[str | Path, ...] = (),
    ) -> Roots:
        return cls(_resolved(data), _resolved(models), _resolved(scripts), _resolved(own))

    def data_file(self, text: str, what: str = "data_source") -> str:
        """`text` as an absolute path with links resolved, once it is under a data root or the server's
        own data."""
        if self.data and _inside(text, self.own):
            return _confine(text, self.own, what, "--data-root")
        return _confine(text, self.data, what, "--data-root")

    def model_dir(self, text: str, what: str = "model_path") -> str:
        return _confine(text, self.models, what, "--model-root")


def _resolved(paths: tuple[str | Path, ...]) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser().resolve() for p in paths)


def _inside(text: str, roots: tuple[Path, ...]) -> bool:
    resolved = Path(text).expanduser().resolve()
    return any(resolved.is_relative_to(root) for root in roots)


def _confine(text: str, roots: tuple[Path, ...], what: str, flag: str) -> str:
    resolved = Path(text).expanduser().resolve()
    if roots and not any(resolved.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        raise InvalidInputError(
            f"{what} {text!r} is outside the directories this server may read ({flag}).",
            f"Use a path under {shown}.",
        )
    return str(resolved)
