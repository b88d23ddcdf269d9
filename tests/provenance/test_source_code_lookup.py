"""mlm:source_code finds a class's distribution from its own file, never by reading every installed distribution.

A real ``pip install --target`` and a real editable install (``pip install -e --prefix``) of a tiny package, an
installed package of the environment (torchvision) and a class in a plain folder; reading every distribution
(``packages_distributions()``, ``distributions()``, ``Distribution.discover()`` without a name) raises.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mlm_export import export_item  # noqa: E402
from mlm_export.provenance import source_code  # noqa: E402
from mlm_export.provenance.source_code import SOURCE_CODE_KEY  # noqa: E402

#: Makes every way of reading all installed distributions raise (put first in a child process's code).
NO_SCAN = """
import importlib.metadata as md

def refuse(*args, **kwargs):
    raise AssertionError("every installed distribution was read")

_discover = md.Distribution.discover.__func__

def discover(cls, **kwargs):
    context = kwargs.get("context")
    if (context.name if context is not None else kwargs.get("name")) is None:
        refuse()
    return _discover(cls, **kwargs)

md.packages_distributions = md.distributions = refuse
md.Distribution.discover = classmethod(discover)
"""
DESCRIBE = """
from mlm_export.provenance.source_code import describe_source_code
found = describe_source_code(model_class="tinymodels.nets:Net")
print(found.href, found.package_version)
"""
PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"
[project]
name = "tiny-models"
version = "1.2.3"
[project.urls]
Repository = "https://github.com/example/tiny-models"
[tool.setuptools]
packages = ["tinymodels"]
"""


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("every installed distribution was read")


def forbid_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading every installed distribution raises in this process from now on; the per-process cache is emptied.

    Call it once the packages the test uses are imported: some scan entry points when imported (triton).
    """
    discover = importlib.metadata.Distribution.discover.__func__

    def discover_one(cls: type, **kwargs: object) -> object:
        context = kwargs.get("context")
        if (context.name if context is not None else kwargs.get("name")) is None:
            _refuse()
        return discover(cls, **kwargs)

    monkeypatch.setattr(importlib.metadata, "packages_distributions", _refuse)
    monkeypatch.setattr(importlib.metadata, "distributions", _refuse)
    monkeypatch.setattr(importlib.metadata.Distribution, "discover", classmethod(discover_one))
    getattr(source_code._distribution_of, "cache_clear", lambda: None)()  # a per-process cache


def _tiny_package(root: Path) -> Path:
    (root / "tinymodels").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "tinymodels" / "__init__.py").write_text("")
    (root / "tinymodels" / "nets.py").write_text("class Net:\n    pass\n")
    return root


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.skip(f"pip cannot build the tiny package here: {done.stderr[-500:]}")


def _describe_in_child(setup: str, cwd: Path) -> str:
    """``describe_source_code(model_class=tinymodels.nets:Net)`` in a child with no distribution scan allowed."""
    code = NO_SCAN + setup + DESCRIBE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_export_of_an_installed_class_reads_only_its_own_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.ops.MLP(4, [8, 3])
    forbid_scans(monkeypatch)
    item = export_item(model, input_shape=[-1, 4], tasks=["regression"], artifact_dir=tmp_path)
    asset = item.assets[SOURCE_CODE_KEY].to_dict()
    assert asset["href"] == "https://github.com/pytorch/vision"  # Home-page of torchvision's metadata
    assert asset["mlm:entrypoint"] == "torchvision.ops.misc:MLP"
    version = importlib.metadata.version("torchvision")  # by name: reads torchvision's metadata only
    assert f"Installed package torchvision {version}" in asset["description"]


def test_export_of_a_class_in_a_plain_folder_reads_no_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_scans(monkeypatch)
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "plainnets.py").write_text("import torch\n\nclass Net(torch.nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    from plainnets import Net

    with pytest.warns(UserWarning, match="neither in a git work tree nor an installed package"):
        item = export_item(Net(4, 2), input_shape=[-1, 4], tasks=["regression"], artifact_dir=tmp_path / "out")
    assert SOURCE_CODE_KEY not in item.assets
    assert source_code._distribution_of(
        "plainnets", (folder / "plainnets.py").resolve()
    ) is None  # fmt: skip


def test_a_pip_install_target_dir_is_found_from_its_dist_info(tmp_path: Path) -> None:
    target = tmp_path / "target"
    _pip("--target", str(target), str(_tiny_package(tmp_path / "src")))
    setup = f"import sys\nsys.path.insert(0, {str(target)!r})\n"
    assert _describe_in_child(setup, tmp_path) == "https://github.com/example/tiny-models 1.2.3"


def test_an_editable_install_is_found_through_its_finder(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    _pip("--prefix", str(prefix), "-e", str(_tiny_package(tmp_path / "src")))
    site_dir = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    assert any(site_dir.glob("__editable___tiny_models_*_finder.py"))  # setuptools' finder, not a path .pth
    setup = f"import site\nsite.addsitedir({str(site_dir)!r})\n"  # runs its .pth: imports the finder
    assert _describe_in_child(setup, tmp_path) == "https://github.com/example/tiny-models 1.2.3"


def test_a_file_no_record_lists_has_no_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_scans(monkeypatch)
    # A file beside a dist-info that lists other files (a module dropped into site-packages by hand).
    site_dir = tmp_path / "site"
    info = site_dir / "other-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "RECORD").write_text("other/__init__.py,,\n")
    (site_dir / "stray.py").write_text("class Net:\n    pass\n")
    assert source_code._distribution_of("stray", (site_dir / "stray.py").resolve()) is None
