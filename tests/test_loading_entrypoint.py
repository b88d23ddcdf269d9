"""load_model/check_item rebuild from the class an Item records, only with trust_code (issue 12, point 21)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch_models as tm
from safetensors.torch import save_file

from mlm_export import export_item, save_item
from mlm_export.errors import UntrustedCodeError
from mlm_export.loading import check_item, load_model, recorded_entrypoint


@pytest.fixture
def item_path(tmp_path: Path) -> Path:
    weights = tmp_path / "weights.safetensors"
    save_file(tm.TinyConvNet(in_channels=3).state_dict(), str(weights))
    item = export_item(weights, model_class="torch_models:TinyConvNet", model_kwargs={"in_channels": 3},
                       bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z")  # fmt: skip
    return save_item(item, tmp_path / "item.json")


def test_entrypoint_of_a_source_code_asset_wins(item_path: Path) -> None:
    document = json.loads(item_path.read_text())
    del document["properties"]["mlm:hyperparameters"]["model_class"]
    document["assets"]["source-code"] = {
        "href": "https://example.com/repo",
        "roles": ["mlm:source_code", "code"],
        "mlm:entrypoint": "torch_models:TinyConvNet",
    }
    item_path.write_text(json.dumps(document))
    assert recorded_entrypoint(document) == ("torch_models:TinyConvNet", {"in_channels": 3})
    with pytest.raises(UntrustedCodeError, match="trust_code"):
        load_model(item_path)
    module = load_model(item_path, trust_code=True)
    assert isinstance(module, tm.TinyConvNet)
    first = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.shape[1] == 3  # built with the recorded model_kwargs
    assert check_item(item_path, trust_code=True).ok


def test_an_explicit_model_class_needs_no_trust(item_path: Path) -> None:
    assert check_item(item_path, model_class=tm.TinyConvNet, model_kwargs={"in_channels": 3}).ok


def test_entrypoint_recorded_without_a_public_remote_is_read(item_path: Path) -> None:
    """``source_code.entrypoint`` (code in a repository without a public URL) is read like an asset's entrypoint."""
    document = json.loads(item_path.read_text())
    hyper = document["properties"]["mlm:hyperparameters"]
    del hyper["model_class"]
    hyper["source_code.entrypoint"] = "torch_models:TinyConvNet"
    assert recorded_entrypoint(document) == ("torch_models:TinyConvNet", {"in_channels": 3})


def test_model_kwargs_that_are_not_json_are_left_out(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    weights = tmp_path / "weights.safetensors"
    save_file(tm.TinyMLP(num_classes=3).state_dict(), str(weights))
    with pytest.warns(UserWarning, match="not JSON data"):
        item = export_item(weights, model_class="torch_models:TinyMLP", model_kwargs={"num_classes": numpy.int64(3)},
                           input_shape=[-1, 6], bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z")  # fmt: skip
    hyper = item.properties["mlm:hyperparameters"]
    assert hyper["model_class"] == "torch_models:TinyMLP"
    assert "model_kwargs" not in hyper
