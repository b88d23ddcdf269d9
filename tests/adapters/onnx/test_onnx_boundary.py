"""adapters/onnx/boundary.py: bad ONNX inputs become typed errors."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx_models import (
    custom_op_model,
    invalid_model,
    linear_model,
    multi_io_model,
    save_with_external_data,
)
from onnx_truth import (
    _quiet_extent,  # noqa: F401 - autouse fixture: registered by importing it
    assert_valid,
    files_in,
    item_inputs,
    item_outputs,
)

from mlm_export.adapters import ExportOptions
from mlm_export.adapters import onnx as adapter
from mlm_export.api import export_item
from mlm_export.errors import (
    ArtifactLoadError,
    ArtifactNotFoundError,
)


def test_missing_external_data(tmp_path: Path) -> None:
    path = save_with_external_data(linear_model(), tmp_path / "linear.onnx")
    (tmp_path / "linear.onnx.data").unlink()
    with pytest.raises(ArtifactNotFoundError) as info:
        export_item(path, validate=False, artifact_dir=tmp_path / "out", embed_metadata=True)
    assert str(tmp_path / "linear.onnx.data") in str(info.value)
    assert not (tmp_path / "out").exists()


def test_truncated_external_data(tmp_path: Path) -> None:
    path = save_with_external_data(linear_model(), tmp_path / "linear.onnx")
    data = tmp_path / "linear.onnx.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(ArtifactLoadError, match="truncated") as info:
        adapter.describe(path, ExportOptions())
    assert str(data) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"this is not an onnx model\n", bytes(range(256)) * 4, b""],
    ids=["text", "binary", "empty"],
)
def test_not_an_onnx_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ArtifactLoadError) as info:
        export_item(path, validate=False)
    assert str(path) in str(info.value)
    assert files_in(tmp_path) == ["model.onnx"]


def test_truncated_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "multi.onnx"
    data = multi_io_model().SerializeToString()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactLoadError) as info:
        adapter.describe(path, ExportOptions())
    assert str(path) in str(info.value)


def test_missing_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError):
        adapter.describe(tmp_path / "absent.onnx", ExportOptions())


def test_checker_failure_carries_the_checker_message(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    onnx.save(invalid_model(), str(path))
    with pytest.raises(onnx.checker.ValidationError) as checker:
        onnx.checker.check_model(str(path))

    with pytest.raises(ArtifactLoadError) as info:
        export_item(path, validate=False)

    assert str(checker.value) in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, onnx.checker.ValidationError)


def test_invalid_in_memory_model_leaves_nothing(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with pytest.raises(ArtifactLoadError):
        adapter.describe(invalid_model(), ExportOptions.from_flat(artifact_dir=artifacts))
    assert not artifacts.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ArtifactLoadError):
        adapter.describe(invalid_model(), ExportOptions.from_flat(artifact_dir=existing))
    assert files_in(existing) == []


def test_unsupported_op_degrades_to_static_description(tmp_path: Path) -> None:
    path = tmp_path / "custom.onnx"
    model = custom_op_model()
    onnx.save(model, str(path))
    with pytest.raises(Exception) as ort_error:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert "Frobnicate" in str(ort_error.value)

    with pytest.warns(RuntimeWarning, match="dry-run failed"):
        item = export_item(path, validate=False)

    assert "description" not in item.properties  # the dry-run failure is a warning, not Item content
    assert item_inputs(item) == {"x": ([-1, 4], "float32")}
    assert item_outputs(item) == {"y": ([-1, 4], "float32")}
    assert item.properties["mlm:framework_version"] == onnx.__version__
    assert "mlm:accelerator" not in item.properties
    assert_valid(item)


def test_published_item_loads_and_checks(tmp_path: Path) -> None:
    loading = pytest.importorskip("mlm_export.loading")
    path = tmp_path / "multi.onnx"
    onnx.save(multi_io_model(), str(path))
    item = export_item(path, validate=False)

    session = loading.load_model(item)
    report = loading.check_item(item)

    assert isinstance(session, ort.InferenceSession)
    assert report.ok, report
