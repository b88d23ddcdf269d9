"""adapters/onnx/from_torch.py: PyTorch modules exported to ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import (
    initializer_elements,
    linear_model,
)
from onnx_truth import (
    _quiet_extent,  # noqa: F401 - autouse fixture: registered by importing it
    assert_assets_hashed,
    assert_valid,
    files_in,
    initializer_bytes,
    item_inputs,
    item_of,
    item_outputs,
    ort_truth,
)

from mlm_export.adapters import ExportOptions
from mlm_export.adapters import onnx as adapter
from mlm_export.api import export_item
from mlm_export.errors import (
    ConfigurationError,
    MissingDependencyError,
    ProbeError,
)

try:
    import torch
except ImportError:  # the ONNX tests above run without torch
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def conv_net() -> Any:
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 1))


def flatten_head() -> Any:
    """Fixed 16x16 input: the Linear layer pins height and width."""

    class FlattenHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(4 * 16 * 16, 6)

        def forward(self, x: Any) -> Any:
            return self.head(self.conv(x).flatten(1))

    return FlattenHead()


def broken() -> Any:
    class Broken(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            raise RuntimeError("boom")

    return Broken()


@needs_torch
def test_torch_module_exported_with_external_data(tmp_path: Path) -> None:
    module = conv_net().train()
    artifacts = tmp_path / "artifacts"

    described = adapter.describe_torch_module(
        module, ExportOptions.from_flat(input_shape=(1, 3, 32, 32), artifact_dir=artifacts)
    )

    assert module.training and all(m.training for m in module.modules())  # flags restored
    assert files_in(artifacts) == ["Sequential.onnx", "Sequential.onnx.data"]
    path = artifacts / "Sequential.onnx"
    assert [Path(a.path) for a in described.artifacts] == [path, artifacts / "Sequential.onnx.data"]
    item = item_of(described, tasks=["semantic-segmentation"])
    truth = ort_truth(path, {"input": (1, 3, 32, 32)}, {"input": (2, 3, 64, 48)})
    assert item_outputs(item) == truth == {"output": ([-1, 5, -1, -1], "float32")}
    assert item_inputs(item) == {"input": ([-1, 3, -1, -1], "float32")}
    assert item.properties["mlm:total_parameters"] == initializer_elements(onnx.load(str(path)))
    assert item.properties["mlm:total_parameters"] == sum(p.numel() for p in module.parameters())
    assert item.properties["mlm:memory_size"] == initializer_bytes(onnx.load(str(path)))
    assert item.properties["mlm:architecture"] == "Sequential"
    with torch.no_grad():
        expected = module.eval()(torch.ones(2, 3, 20, 28)).numpy()
    got = ort.InferenceSession(str(path)).run(None, {"input": np.ones((2, 3, 20, 28), np.float32)})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert_assets_hashed(item)
    assert_valid(item)


@needs_torch
def test_torch_module_with_fixed_spatial_size(tmp_path: Path) -> None:
    module = flatten_head()
    artifacts = tmp_path / "artifacts"

    described = adapter.describe_torch_module(
        module, ExportOptions.from_flat(example_input=torch.randn(2, 3, 16, 16), artifact_dir=artifacts)
    )

    path = Path(described.artifacts[0].path)
    session = ort.InferenceSession(str(path))
    name = session.get_inputs()[0].name
    assert session.run(None, {name: np.ones((3, 3, 16, 16), np.float32)})[0].shape == (3, 6)
    with pytest.raises(Exception):  # noqa: B017 - ground truth: other sizes do not run
        session.run(None, {name: np.ones((1, 3, 24, 24), np.float32)})
    assert described.inputs[0].shape == (-1, 3, 16, 16)
    assert described.outputs[0].shape == (-1, 6)
    assert described.total_parameters == initializer_elements(onnx.load(str(path)))


@needs_torch
def test_export_item_with_artifact_format_onnx(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    try:
        item = export_item(
            conv_net(), artifact_format="onnx", input_shape=(1, 3, 32, 32), artifact_dir=artifacts, validate=False
        )
    except MissingDependencyError as exc:
        pytest.skip(f"the torch adapter is not available: {exc}")
    assert item.assets["model"].extra_fields["mlm:artifact_type"] == "onnx"
    assert Path(item.assets["model"].href).suffix == ".onnx"
    assert "model-external-data" in item.assets
    assert_assets_hashed(item)
    assert_valid(item)


@needs_torch
def test_torch_module_needs_an_example(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with pytest.raises(ConfigurationError, match="input_shape"):
        adapter.describe_torch_module(conv_net(), ExportOptions.from_flat(artifact_dir=artifacts))
    assert not artifacts.exists()


@needs_torch
def test_torch_forward_failure_leaves_nothing(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with pytest.raises(ProbeError, match="boom"):
        adapter.describe_torch_module(
            broken(), ExportOptions.from_flat(input_shape=(1, 3, 8, 8), artifact_dir=artifacts)
        )
    assert not artifacts.exists()


def test_no_warnings_for_a_clean_model(tmp_path: Path) -> None:
    path = tmp_path / "linear.onnx"
    onnx.save(linear_model(), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        adapter.describe(path, ExportOptions())


def test_bfloat16_output_is_measured_and_checked(tmp_path: Path) -> None:
    """numpy has no bfloat16: such outputs are read as OrtValues, so the dry-run and check_item still work."""
    from onnx import TensorProto, helper

    from mlm_export import check_item, save_item

    image = helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 3, 8, 8])
    relu = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    half = helper.make_tensor_value_info("z", TensorProto.BFLOAT16, ["batch", 3, 8, 8])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["img"], ["y"]), helper.make_node("Cast", ["img"], ["z"], to=TensorProto.BFLOAT16)],
        "g",
        [image],
        [relu, half],
    )
    path = tmp_path / "bf16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run_with_ort_values(None, {"img": ort.OrtValue.ortvalue_from_numpy(np.zeros((2, 3, 8, 8), "f4"))})
    assert [o.shape() for o in outputs] == [[2, 3, 8, 8], [2, 3, 8, 8]]
    item = export_item(path, bbox=[0, 0, 1, 1], tasks=["regression"])
    results = {o["name"]: o["result"] for o in item.properties["mlm:output"]}
    assert results["y"]["data_type"] == "float32" and results["z"]["data_type"] == "other"
    assert results["z"]["shape"] == [-1, 3, 8, 8]
    assert "dry-run failed" not in item.properties.get("description", "")
    assert check_item(save_item(item, tmp_path / "item.json")).ok
