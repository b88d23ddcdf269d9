"""An in-memory module's Item records how to rebuild it, or says at export time what it lacks (issue 23, point 1)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")

from mlm_export import export_item, save_item  # noqa: E402
from mlm_export.provenance.rebuild_recipe import recipe_of  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

USER_CODE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


class Tagged(nn.Module):
    """Records its own constructor arguments in ``hparams`` (as Lightning's save_hyperparameters does)."""

    def __init__(self, width: int, depth: int = 1) -> None:
        super().__init__()
        self.hparams = {"width": width, "depth": depth}
        self.layers = nn.Sequential(*[nn.Linear(4 if i == 0 else width, width) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Needs(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.head = nn.Linear(4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class Misleading(Needs):
    """``hparams`` that are no constructor arguments (a stored config) are not taken for them."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
        self.hparams = {"architecture": "misleading", "width": width + 1}
'''


@pytest.fixture(name="user_code")
def user_code_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, ModuleType]:
    """A module in a plain folder (no git, no package metadata) on ``sys.path``, imported by its name."""
    folder = tmp_path / "code"
    folder.mkdir()
    name = f"usernets_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(folder))
    return folder, importlib.import_module(name)


def _export(model: torch.nn.Module, shape: list[int], directory: Path, **extra: object) -> dict:
    item = export_item(
        model, input_shape=shape, tasks=["classification"], value_scaling="none", resize_type="none",
        artifact_dir=directory, bbox=[0, 0, 1, 1], datetime="2020-01-01T00:00:00Z", **extra,
    )  # fmt: skip
    return json.loads(save_item(item, directory / "item.json").read_text())


def _quiet_export(model: torch.nn.Module, shape: list[int], directory: Path, **extra: object) -> tuple[dict, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        document = _export(model, shape, directory, **extra)
    return document, " | ".join(str(w.message) for w in caught)


def test_a_class_in_a_plain_folder_is_recorded_and_check_rebuilds_it(user_code, tmp_path: Path) -> None:
    folder, module = user_code
    name = module.__name__
    plain, _ = _quiet_export(module.Net(), [-1, 3, 16, 16], tmp_path / "net")
    tagged, said = _quiet_export(module.Tagged(width=6, depth=2), [-1, 4], tmp_path / "tagged")
    assert plain["properties"]["mlm:hyperparameters"]["model_class"] == f"{name}:Net"
    assert "model_kwargs" not in plain["properties"]["mlm:hyperparameters"]  # the defaults rebuild it
    hyper = tagged["properties"]["mlm:hyperparameters"]
    assert (hyper["model_class"], hyper["model_kwargs"]) == (f"{name}:Tagged", {"width": 6, "depth": 2})
    assert "cannot rebuild" not in said
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}
    for item in (tmp_path / "net" / "item.json", tmp_path / "tagged" / "item.json"):
        done = subprocess.run(
            [sys.executable, "-m", "mlm_export", "check", str(item), "--trust-code"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ok" in done.stdout


def test_models_the_item_cannot_rebuild_warn_naming_what_is_missing(user_code, tmp_path: Path) -> None:
    _, module = user_code

    class Local(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x)

    cases = [
        (module.Needs(5), [-1, 4], r"Needs\(\) needs arguments \(width\).*Pass model_kwargs="),
        (module.Misleading(5), [-1, 4], r"Misleading\(\) needs arguments \(width\).*Pass model_kwargs="),
        (module.Net(in_channels=5), [-1, 5, 8, 8], r"Net\(\) with its default arguments builds other weights"),
        (torch.nn.Sequential(torch.nn.Linear(4, 2)), [-1, 4], r"Sequential is built from layer objects"),
        (Local(), [-1, 4], r"Local is defined in __main__, a notebook or a function.*Pass model_class="),
    ]
    for index, (model, shape, message) in enumerate(cases):
        with pytest.warns(UserWarning, match=message):
            document = _export(model, shape, tmp_path / str(index))
        hyper = document["properties"].get("mlm:hyperparameters", {})
        assert "model_kwargs" not in hyper
        assert "model_class" not in hyper or index < 3  # a class that imports by name is still recorded
    # Given, the arguments are recorded and nothing is missing.
    document, said = _quiet_export(module.Needs(5), [-1, 4], tmp_path / "given", model_kwargs={"width": 5})
    assert document["properties"]["mlm:hyperparameters"]["model_kwargs"] == {"width": 5}
    assert "cannot rebuild" not in said


def test_timm_resnet_needs_its_block_and_layers() -> None:
    resnet = pytest.importorskip("timm.models.resnet")
    model = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=3)
    recipe = recipe_of(model)
    assert recipe is not None and recipe.model_class == "timm.models.resnet:ResNet"
    assert recipe.missing is not None and "block, layers" in recipe.missing[0]


def test_compiled_modules_and_files_need_no_recipe(tmp_path: Path) -> None:
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    assert recipe_of(scripted) is None
    assert recipe_of(str(tmp_path / "model.pt")) is None
    code = textwrap.dedent("""
        import torch
        from mlm_export.provenance.rebuild_recipe import recipe_of
        class Main(torch.nn.Module):
            pass
        print(recipe_of(Main()).missing[1])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.stdout.strip() == "model_class", done.stderr


def test_lightning_save_hyperparameters_are_the_kwargs(user_code, tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    folder, _ = user_code
    name = f"litnets_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(
        textwrap.dedent("""
            from lightning.pytorch import LightningModule
            from torch import nn

            class Lit(LightningModule):
                def __init__(self, width: int, lr: float = 0.1, pretrained: bool = False) -> None:
                    super().__init__()
                    self.save_hyperparameters()
                    self.head = nn.Linear(4, width)

                def forward(self, x):
                    return self.head(x)
        """)
    )
    module = importlib.import_module(name)
    document, said = _quiet_export(module.Lit(width=3, lr=0.5, pretrained=True), [-1, 4], tmp_path / "lit")
    hyper = document["properties"]["mlm:hyperparameters"]
    assert hyper["model_class"] == f"{name}:Lit"
    # A true pretrained flag is recorded false: the weights asset holds the weights, a rebuild downloads nothing.
    assert hyper["model_kwargs"] == {"width": 3, "lr": 0.5, "pretrained": False}
    assert "cannot rebuild" not in said
