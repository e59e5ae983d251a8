"""The package's shape: layers that import only downward, no import cycles, the training stack only under
trainers/, small modules and functions, and an exact public surface."""

from __future__ import annotations

import ast
import statistics
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import mcp_trainer

PACKAGE = Path(mcp_trainer.__file__).parent
# Lowest first: a module may import from its own layer or the ones below, never from above.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "ids", "polling", "offload", "files", "secretfile", "version", "report"),
    ("specs",),
    ("records", "pipeline_records"),
    ("preflight", "machine"),
    ("views",),
    ("artifacts",),
    ("trainers",),
    ("engine",),
    ("service",),
    ("server",),
    ("cli", "commands", "__main__", "__init__"),
]
TRAINING_STACK = (
    *("sklearn", "pandas", "numpy", "optuna", "matplotlib", "PIL", "joblib"),
    *("torch", "transformers", "peft"),
)
MAX_FUNCTION_LINES = 80
MAX_MEDIAN_MODULE_LINES = 200


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield ".".join(("mcp_trainer", *parts)).removesuffix(".__init__"), path


MODULES = dict(modules())


def imports_of(path: Path, *, top_level_only: bool = False) -> set[str]:
    """What a module imports: `from a.b import c` names `a.b.c` when that is a module, else `a.b`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def layer_of(module: str) -> int:
    first = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if first in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def known(module: str) -> str | None:
    """The package module an import names (`mcp_trainer.specs.tabular.TabularSpec` -> its module)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def test_every_module_imports_only_from_its_layer_or_below() -> None:
    upward = []
    for module, path in modules():
        for name in imports_of(path):
            target = known(name) if name.startswith("mcp_trainer") else None
            if target is not None and layer_of(target) > layer_of(module):
                upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(sorted(set(upward)))


def test_there_are_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        targets = {known(n) for n in imports_of(path, top_level_only=True) if n.startswith("mcp_trainer")}
        graph[module] = {t for t in targets if t is not None and t != module}

    def on_a_cycle(start: str) -> bool:
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            node = stack.pop()
            if node == start:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))
        return False

    assert not [m for m in graph if on_a_cycle(m)]


def test_only_trainers_import_the_training_stack() -> None:
    offenders = [
        f"{module} imports {name}"
        for module, path in modules()
        if not module.startswith("mcp_trainer.trainers")
        for name in imports_of(path)
        if name.split(".")[0] in TRAINING_STACK
    ]
    assert not offenders, offenders


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for module, path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, long


def test_the_median_module_is_small() -> None:
    sizes = [len(path.read_text(encoding="utf-8").splitlines()) for _, path in modules()]
    assert statistics.median(sizes) <= MAX_MEDIAN_MODULE_LINES


def test_only_the_server_and_the_cli_import_mcp() -> None:
    for module, path in modules():
        if not module.startswith(("mcp_trainer.server", "mcp_trainer.cli")):
            assert not any(n.split(".")[0] == "mcp" for n in imports_of(path)), module


def test_the_legacy_svmspec_name_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="TabularSpec"):
        legacy = mcp_trainer.SVMSpec  # type: ignore[attr-defined]
    assert legacy is mcp_trainer.TabularSpec
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "SVMSpec" not in mcp_trainer.__all__
