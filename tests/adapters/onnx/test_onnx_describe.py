"""adapters/onnx/describe.py: in-memory ModelProto sources."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx_models import (
    conv_model,
    initializer_elements,
    linear_model,
    save_with_external_data,
)
from onnx_truth import (
    _quiet_extent,  # noqa: F401 - autouse fixture: registered by importing it
    assert_assets_hashed,
    assert_valid,
    files_in,
    item_outputs,
    ort_truth,
)

from mlm_export.adapters import ExportOptions
from mlm_export.adapters import onnx as adapter
from mlm_export.api import export_item
from mlm_export.errors import (
    ArtifactNotFoundError,
)


def test_in_memory_model_is_written_and_hashed(tmp_path: Path) -> None:
    model = conv_model()
    serialized = model.SerializeToString()
    artifacts = tmp_path / "artifacts"

    item = export_item(model, artifact_dir=artifacts, validate=False)

    assert model.SerializeToString() == serialized  # the caller's proto is not changed
    assert files_in(artifacts) == ["pixel_classifier.onnx"]
    path = Path(item.assets["model"].href)
    assert path == artifacts / "pixel_classifier.onnx"
    truth = ort_truth(path, {"image": (1, 3, 64, 64)}, {"image": (2, 3, 96, 32)})
    assert item_outputs(item) == truth
    assert item.properties["mlm:total_parameters"] == initializer_elements(model)
    assert_assets_hashed(item)
    assert_valid(item)


def test_in_memory_model_default_artifact_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    described = adapter.describe(linear_model(name="tiny"), ExportOptions())
    assert Path(described.artifacts[0].path) == tmp_path / "artifacts" / "tiny.onnx"
    assert files_in(tmp_path / "artifacts") == ["tiny.onnx"]


def test_in_memory_model_with_unresolved_external_data(tmp_path: Path) -> None:
    path = save_with_external_data(linear_model(), tmp_path / "linear.onnx")
    header = onnx.load(str(path), load_external_data=False)
    with pytest.raises(ArtifactNotFoundError, match="linear.onnx.data"):
        adapter.describe(header, ExportOptions.from_flat(artifact_dir=tmp_path / "out"))
    assert not (tmp_path / "out").exists()
