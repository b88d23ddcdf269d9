"""Tests mirror the package: ``tests/<pkg>/test_<module>[_<topic>].py`` tests ``mlm_export/<pkg>/<module>.py``.

A test file's folder under ``tests/`` is the package folder under ``mlm_export/`` (``tests/cli/`` holds the tests of
the ``mlm_export/cli/`` package), and its name starts with a module of that package, the package's
own name (tests of the package as a whole, e.g. ``tests/card/test_card_browser.py``), or ``<package>_<module>``
(``tests/adapters/torch/test_torch_rebuild.py``: pytest imports test files by their bare name, so names stay unique
across folders). Only the cross-cutting files in ``CROSS_CUTTING`` are exempt.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "mlm_export"

# Files that test no single module: the README, notebook, benchmarks, the public API, corpora across modules.
CROSS_CUTTING = frozenset(
    {
        "test_bad_inputs.py",  # the bad-input corpus: one typed error per case, whatever module raises it
        "test_benchmarks.py",  # benchmarks/run.py runs end to end
        "test_confinement.py",  # an Item cannot make any command read, fetch or write outside its place
        "test_layout_mirror.py",  # this file
        "test_layouts.py",  # axis names across adapters and layer kinds
        "test_notebook.py",  # notebooks/quickstart.ipynb
        "test_properties.py",  # property tests: description -> builder -> validator
        "test_public_api.py",  # mlm_export/__init__.py's exported names
        "test_readme.py",  # every README code example
    }
)


def _module_names(package: Path, folder: str) -> set[str]:
    """Names a test file in ``tests/<folder>`` may start with (empty when the folder mirrors no package)."""
    directory = package / folder if folder else package
    if not (directory / "__init__.py").is_file():
        return set()
    modules = {path.stem for path in directory.glob("*.py") if not path.stem.startswith("__")}
    if not folder:
        return modules
    own = Path(folder).name
    return modules | {own} | {f"{own}_{module}" for module in modules}


def misplaced(tests: Path, package: Path, cross_cutting: frozenset[str] = CROSS_CUTTING) -> list[str]:
    """Test files whose folder or name does not mirror a module of ``package``, as paths relative to ``tests``."""
    wrong = []
    for path in sorted(tests.rglob("test_*.py")):
        relative = path.relative_to(tests)
        if "__pycache__" in relative.parts or (relative.parent == Path() and path.name in cross_cutting):
            continue
        folder = relative.parent.as_posix() if relative.parent != Path() else ""
        stem = path.stem.removeprefix("test_")
        names = _module_names(package, folder)
        if not any(stem == name or stem.startswith(f"{name}_") for name in names):
            wrong.append(relative.as_posix())
    return wrong


def test_every_test_file_mirrors_a_module() -> None:
    wrong = misplaced(TESTS, PACKAGE)
    assert not wrong, (
        f"{wrong}: name each test file after the module it tests, in the folder mirroring its package "
        f"(tests/stac/test_builder.py for mlm_export/stac/builder.py), or add it to CROSS_CUTTING with a reason"
    )


def test_cross_cutting_list_names_existing_files() -> None:
    missing = sorted(name for name in CROSS_CUTTING if not (TESTS / name).is_file())
    assert not missing, f"{missing} no longer exist: remove them from CROSS_CUTTING"


def test_test_file_names_are_unique() -> None:
    # pytest imports test modules by their bare name (no __init__.py): two test_x.py in two folders collide.
    names = Counter(path.name for path in TESTS.rglob("test_*.py") if "__pycache__" not in path.parts)
    assert [name for name, count in names.items() if count > 1] == []


@pytest.mark.parametrize(
    ("test_file", "ok"),
    [
        ("test_hashing.py", True),
        ("test_loading_entrypoint.py", True),  # module + topic
        ("test_hash.py", False),  # a module name is matched whole
        ("test_hashingfoo.py", False),  # a topic needs its underscore
        ("stac/test_builder.py", True),
        ("stac/test_stac_builder.py", True),  # package prefix, as tests/adapters/torch/ does
        ("stac/test_hashing.py", False),  # hashing.py is top-level, not in stac/
        ("test_builder.py", False),  # builder.py lives in stac/
        ("adapters/torch/test_torch_rebuild.py", True),
        ("adapters/torch/test_rebuild.py", True),
        ("adapters/torch/test_graph.py", False),  # graph.py is in adapters/onnx/
        ("cli/test_cli_card.py", True),
        ("cli/test_cli.py", True),
        ("cli/test_export.py", False),  # no mlm_export/cli/export.py
        ("cli/test_card.py", True),
        ("security/test_archive_safety.py", False),  # no mlm_export/security package
        ("test_readme.py", True),  # cross-cutting
        ("stac/test_readme.py", False),  # cross-cutting only at the top level
    ],
)
def test_misplaced_files_are_found(tmp_path: Path, test_file: str, ok: bool) -> None:
    package = tmp_path / "mlm_export"
    for module in (
        "__init__",
        "hashing",
        "loading",
        "cli/__init__",
        "cli/card",
        "stac/__init__",
        "stac/builder",
        "adapters/__init__",
        "adapters/torch/__init__",
        "adapters/torch/rebuild",
        "adapters/onnx/__init__",
        "adapters/onnx/graph",
    ):
        (package / f"{module}.py").parent.mkdir(parents=True, exist_ok=True)
        (package / f"{module}.py").write_text("")
    tests = tmp_path / "tests"
    (tests / test_file).parent.mkdir(parents=True, exist_ok=True)
    (tests / test_file).write_text("")
    assert misplaced(tests, package, frozenset({"test_readme.py"})) == ([] if ok else [test_file])


def test_architecture_doc_names_every_module() -> None:
    """docs/architecture.md has an entry for every module of the package (by file name or package path)."""
    doc = (TESTS.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py"
        and f"`{path.name}`" not in doc
        and path.relative_to(PACKAGE).as_posix() not in doc
    ]
    assert not missing, f"docs/architecture.md does not describe: {missing}"
