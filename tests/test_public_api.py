"""The top-level API: lazy at run time, real types for type checkers (igfiqa/__init__.py)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import igfiqa

INIT = Path(igfiqa.__file__)


def type_checking_imports() -> dict[str, str]:
    """name -> module of every ``from M import N as N`` inside ``if TYPE_CHECKING:``."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1, "igfiqa/__init__.py needs one `if TYPE_CHECKING:` block"
    names: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.dump(node)
        for alias in node.names:
            # `as` the same name: an explicit re-export for mypy and pyright
            assert alias.asname == alias.name, f"write `import {alias.name} as {alias.name}`"
            names[alias.name] = node.module
    return names


def test_every_public_name_is_typed_lazy_and_listed_once() -> None:
    typed = type_checking_imports()
    public = [name for name in igfiqa.__all__ if name != "__version__"]
    assert len(public) == len(set(public))
    assert set(typed) == set(public) == set(igfiqa._LAZY)
    assert typed == igfiqa._LAZY  # each name from the same module at run time and for the checker


def test_every_public_name_resolves_to_its_module_object() -> None:
    for name, module in igfiqa._LAZY.items():
        assert getattr(igfiqa, name) is getattr(importlib.import_module(module), name), name
    assert set(igfiqa.__all__) <= set(dir(igfiqa))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        igfiqa.nope  # noqa: B018


def test_import_igfiqa_imports_nothing_else() -> None:
    code = (
        "import sys, igfiqa\n"
        "extra = [m for m in sys.modules if m.startswith(('igfiqa.', 'torch', 'numpy'))]\n"
        "print(extra)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None and shutil.which("pyright") is None,
    reason="neither mypy nor pyright is installed",
)
def test_a_type_checker_sees_the_real_types(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "import igfiqa\nreveal_type(igfiqa.evaluate)\nmodels: int = igfiqa.list_models()\n",
        encoding="utf-8",
    )
    if importlib.util.find_spec("mypy") is not None:
        command = [sys.executable, "-m", "mypy", "--follow-imports=silent", str(snippet)]
        command += ["--ignore-missing-imports", "--cache-dir", str(tmp_path / "cache")]
    else:
        command = ["pyright", str(snippet)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600).stdout
    assert "EvaluationResults" in out, out  # evaluate's return type, not Any
    assert "list[str]" in out, out  # assigning the names to an int is caught
