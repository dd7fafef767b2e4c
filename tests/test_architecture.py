"""The package's layers import only downward (docs/architecture.md): parsed from the source, lazy
imports inside functions included."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import igfiqa

PACKAGE = Path(igfiqa.__file__).parent

LAYERS: dict[str, int] = {
    # 0: no igfiqa imports but errors
    "errors": 0,
    "files": 1, "progress": 1, "collective": 1, "machine": 1, "registry": 1,
    "checkpoint": 2, "data": 2, "method": 2,
    "models": 3, "detection": 3, "config": 3,
    "inference": 4,
    "evaluation": 5,
    "engine": 6,
    "experiments": 7,
    "cli": 8, "__main__": 9, "__init__": 9,
}  # fmt: skip
"""Each part of the package (subpackage or top-level module) and its layer: a part may import parts
of lower layers only (and itself)."""


def import_graph() -> dict[str, set[str]]:
    """part -> the other parts it imports (``import igfiqa.x`` / ``from igfiqa.x import ...`` /
    ``from igfiqa import x``), anywhere in its files."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).parts
        part = relative[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "igfiqa":  # the root's __version__ is a constant, not a layer
                    names = [f"igfiqa.{a.name}" for a in node.names if a.name != "__version__"]
                elif node.module.startswith("igfiqa."):
                    names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("igfiqa.")]
            for name in names:
                target = name.split(".")[1]
                if target != part:
                    graph[part].add(target)
    return graph


def test_every_part_has_a_layer() -> None:
    parts = {
        p.name.removesuffix(".py")
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    assert parts <= set(LAYERS), (
        f"give these a layer in LAYERS and docs/architecture.md: {sorted(parts - set(LAYERS))}"
    )


def test_imports_go_only_downward() -> None:
    upward = [
        f"{part} (layer {LAYERS[part]}) imports {target} (layer {LAYERS.get(target)})"
        for part, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if part != "__init__" and LAYERS.get(target, 99) >= LAYERS[part]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_parts() -> None:
    graph = import_graph()
    graph.pop("__init__", None)  # the public API re-exports lazily from every layer
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, f"import cycles: {cycles}"


def test_docs_and_code_cite_only_the_projects_own_files() -> None:
    import re

    root = PACKAGE.parent.parent
    outside = re.compile(
        r"\b("
        + "|".join(["METHOD", "FORMATS", "EVALUATION", "ARCHITECTURE"])
        + r")\.md\b|shared/"
        + "docs"
    )
    files = [
        *PACKAGE.rglob("*.py"),
        *PACKAGE.rglob("*.yaml"),
        *(root / "docs").glob("*.md"),
        root / "README.md",
    ]
    files += [p for p in (root / "tests").rglob("*.py") if p.name != "test_architecture.py"]
    cited = [
        f"{p.relative_to(root)}: {m.group(0)}"
        for p in files
        if p.is_file()
        for m in outside.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not cited, "cite docs/*.md instead of files outside the project:\n" + "\n".join(cited)
