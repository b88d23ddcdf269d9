"""processing:software names mlm-export and the framework versions that measured the Item; no level claimed."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mlm_export import __version__, export_item, validate_item  # noqa: E402


def test_torch_item_records_mlm_export_and_torch(tmp_path: Path) -> None:
    item = export_item(torch.nn.Linear(2, 2), input_shape=[-1, 2], tasks=["regression"], artifact_dir=tmp_path)
    assert item.properties["processing:software"] == {
        "mlm-export": __version__,
        "torch": importlib.metadata.version("torch"),
    }
    assert not any(k.startswith("processing:") and k != "processing:software" for k in item.properties)
    assert "https://stac-extensions.github.io/processing/v1.1.0/schema.json" in item.stac_extensions
    assert validate_item(item).valid


def test_onnx_item_records_onnx_and_onnxruntime(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(path), dynamo=False)
    item = export_item(path, tasks=["regression"])
    software = item.properties["processing:software"]
    assert software["onnx"] == onnx.__version__
    assert software["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert "torch" not in software
