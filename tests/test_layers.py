"""The import graph: one direction of dependency and no cycles, function-local imports included.

`LAYERS`, lowest first: a module imports its own layer or lower ones, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "dogbreed",  # the package itself: __version__, and lazy re-exports of the public API (below)
            "dogbreed.errors",
            "dogbreed.atomic",
            "dogbreed.processes",
            "dogbreed.hparams",
            "dogbreed.container",
            "dogbreed.html_report",
            "dogbreed.schema",
            "dogbreed.storage",
        ),
    ),
    ("data and model", ("dogbreed.data", "dogbreed.model")),
    ("serving and debug", ("dogbreed.serving", "dogbreed.debug")),
    ("evaluation", ("dogbreed.evaluation",)),  # runs what serving serves; a training run calls it
    ("training", ("dogbreed.training",)),
    ("search", ("dogbreed.search",)),
    (
        "commands",
        tuple(
            f"dogbreed.{name}"
            for name in ("train", "serve", "predict", "export", "package", "report", "demo", "evaluate")
        ),
    ),
    ("launch", ("launch",)),
]
# `from dogbreed import DogBreedClassifier` loads the model only when asked for (dogbreed/__init__.py):
# the public API's lazy re-exports are the one sanctioned way down-to-up.
FACADES = {"dogbreed", "dogbreed.data"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    files = [*(REPO / "dogbreed").rglob("*.py"), *(REPO / "launch").rglob("*.py")]
    return {module_name(p): p for p in files if "static" not in p.parts}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module `path` imports, at the top or inside a function."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def layer(name: str) -> int:
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if name == prefix or name.startswith(f"{prefix}.")
    ]
    assert matches, f"{name} is in no layer: add it to LAYERS"
    return max(matches)[1]  # the most specific prefix decides


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{name} ({LAYERS[layer(name)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for name, targets in graph().items()
        if name not in FACADES
        for target in targets
        if layer(target) > layer(name)
    ]
    assert upward == []


def test_serving_debug_and_data_import_nothing_from_training_or_launch() -> None:
    edges = graph()
    below = [n for n in edges if n.startswith(("dogbreed.serving", "dogbreed.debug", "dogbreed.data"))]
    assert below and not [
        (n, t) for n in below for t in edges[n] if t.startswith(("dogbreed.training", "launch"))
    ]


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state and node not in FACADES:
            visit(node, [node])
    assert [c for c in cycles if not set(c) & FACADES] == []
