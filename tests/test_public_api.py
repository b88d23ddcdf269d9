"""mlm_export/__init__.py: one list of public names (``_LAZY``); each imports, has a docstring and is documented."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import mlm_export

REPO = Path(__file__).resolve().parents[1]
INIT = REPO / "mlm_export" / "__init__.py"
DOCS = "\n".join(p.read_text(encoding="utf-8") for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the imports under ``if TYPE_CHECKING:`` in __init__.py, read from its source."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    found: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name}: write 'import X as X' to mark a re-export"
            found[alias.name] = node.module
    return found


def test_type_checking_imports_match_the_lazy_table() -> None:
    assert _type_checking_imports() == mlm_export._LAZY


def test_all_is_the_lazy_table_plus_the_eager_names() -> None:
    assert mlm_export.__all__ == sorted({*mlm_export._LAZY, "MLMExportError", "__version__"})
    assert set(mlm_export.__all__) <= set(dir(mlm_export))


@pytest.mark.parametrize("name", mlm_export.__all__)
def test_every_exported_name_imports_and_is_documented(name: str) -> None:
    value = getattr(mlm_export, name)
    if name in mlm_export._LAZY:
        assert value is getattr(importlib.import_module(mlm_export._LAZY[name]), name)
    if name == "__version__":
        assert re.fullmatch(r"\d+\.\d+\.\d+", value)
    else:
        assert inspect.getdoc(value), f"{name} has no docstring"
    assert re.search(rf"\b{re.escape(name)}\b", DOCS), f"{name} is mentioned neither in README.md nor in docs/"


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        mlm_export.no_such_name  # noqa: B018
    assert "no_such_name" not in mlm_export.__all__
