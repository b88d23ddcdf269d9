"""Real git repositories in temporary directories holding a small importable PyTorch model module (fixture)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

MODEL_SOURCE = '''"""A small model package made by the tests."""

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def build(num_classes: int = 4) -> Net:
    return Net(num_classes=num_classes)
'''


@dataclass
class ModelRepo:
    """A git work tree with ``<package>/models.py`` committed, and that module imported."""

    root: Path
    package: str
    module: ModuleType

    @property
    def relative_path(self) -> str:
        return f"{self.package}/models.py"

    def git(self, *args: str) -> str:
        return git(self.root, *args)


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` with a fixed identity and no user configuration; return its stdout."""
    command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"]
    done = subprocess.run([*command, *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture(name="make_repo")
def make_repo_fixture(tmp_path: Path) -> Iterator[Callable[..., ModelRepo]]:
    """Factory: ``make_repo(remote=None, commit=True)`` -> a fresh repo with a uniquely named package."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    made: list[ModelRepo] = []

    def make(remote: str | None = None, *, commit: bool = True) -> ModelRepo:
        package = f"provpkg_{uuid.uuid4().hex[:10]}"
        root = tmp_path / f"repo-{len(made)}"
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (root / package / "models.py").write_text(MODEL_SOURCE)
        git(root, "init", "-q")
        (root / "README.md").write_text("test repository\n")
        git(root, "add", "README.md")
        if commit:
            git(root, "add", package)
        git(root, "commit", "-q", "-m", "first")
        if remote is not None:
            git(root, "remote", "add", "origin", remote)
        sys.path.insert(0, str(root))
        repo = ModelRepo(root, package, importlib.import_module(f"{package}.models"))
        made.append(repo)
        return repo

    yield make
    for repo in made:
        sys.path.remove(str(repo.root))
        for name in [n for n in sys.modules if n.split(".")[0] == repo.package]:
            del sys.modules[name]
