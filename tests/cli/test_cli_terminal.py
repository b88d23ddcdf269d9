"""The CLI in a real terminal (pseudo-terminal): rich tables and spinners work, and rich is declared."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import torch_models as tm
from safetensors.torch import save_file
from terminal import run_on_terminal

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 240) -> tuple[int, str]:
    """Run ``python -m mlm_export ARGS`` with stdin/stdout/stderr on a pseudo-terminal; return (code, output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "COLUMNS": "160", "TERM": "xterm"}
    return run_on_terminal([sys.executable, "-m", "mlm_export", *args], env, cwd, timeout)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("terminal")
    torch.manual_seed(0)
    path = directory / "weights.safetensors"
    save_file(tm.TinyConvNet().state_dict(), str(path))
    return path


def test_rich_is_a_declared_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]]
    assert "rich" in declared  # export, inspect and check import it on a terminal


def test_inspect_export_check_in_a_terminal(weights: Path) -> None:
    common = ["--model-class", "torch_models:TinyConvNet", "--input-shape=-1,4,64,64"]
    code, output = run_in_terminal(["inspect", str(weights), *common], weights.parent)
    assert code == 0, output
    assert "ModuleNotFoundError" not in output and "Traceback" not in output
    assert "┃" in output or "│" in output  # a rich table, drawn with box characters
    item = weights.parent / "out" / "item.json"
    code, output = run_in_terminal(
        ["export", str(weights), *common, "--bbox", "0", "0", "1", "1", "--datetime", "2024-01-01T00:00:00Z",
         "-o", str(item), "--allow-outside", str(weights.parent)],
        weights.parent,
    )  # fmt: skip
    assert code == 0, output
    assert item.is_file()
    code, output = run_in_terminal(
        ["check", str(item), "--trust-code", "--allow-outside", str(weights.parent)], weights.parent
    )
    assert code == 0, output
    assert "check_item ok" in output
