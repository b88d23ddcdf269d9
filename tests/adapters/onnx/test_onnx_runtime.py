"""adapters/onnx/runtime.py: options of the onnxruntime dry-run (shapes, device)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import (
    conv_model,
    linear_model,
)
from onnx_truth import _quiet_extent  # noqa: F401 - autouse fixture: registered by importing it

from mlm_export.adapters import ExportOptions
from mlm_export.adapters import onnx as adapter
from mlm_export.errors import (
    ConfigurationError,
)


def test_input_shape_sizes_are_where_probing_starts(tmp_path: Path) -> None:
    """A size given is probed like any other (issue 23, point 4); probe_dynamic=False keeps the sizes given."""
    path = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(path))

    described = adapter.describe(path, ExportOptions.from_flat(input_shape=(-1, 3, 32, 48)))
    assert described.inputs[0].shape == (-1, 3, -1, -1)
    assert described.outputs[0].shape == (-1, 4, -1, -1)
    assert any("height/width given as 32x48 in input_shape" in n for n in described.notes)

    fixed = ExportOptions.from_flat(input_shape={"image": (2, 3, -1, -1)}, probe_dynamic=False)
    described = adapter.describe(path, fixed)
    assert described.inputs[0].shape == (2, 3, -1, -1)
    assert described.outputs[0].shape == (2, 4, -1, -1)
    fixed = ExportOptions.from_flat(input_shape=(-1, 3, 32, 48), probe_dynamic=False)
    assert adapter.describe(path, fixed).inputs[0].shape == (-1, 3, 32, 48)

    with pytest.raises(ConfigurationError, match="input_shape"):
        adapter.describe(path, ExportOptions.from_flat(input_shape=(1, 3, 32)))
    with pytest.raises(ConfigurationError, match="fixed"):
        adapter.describe(path, ExportOptions.from_flat(input_shape=(1, 5, 32, 32)))
    with pytest.raises(ConfigurationError, match="nope"):
        adapter.describe(path, ExportOptions.from_flat(input_shape={"nope": (1, 3, 8, 8)}))


def test_example_input_sizes_are_probed(tmp_path: Path) -> None:
    path = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(path))
    example = np.zeros((1, 3, 24, 24), np.float32)
    described = adapter.describe(path, ExportOptions.from_flat(example_input=example))
    assert described.inputs[0].shape == (-1, 3, -1, -1)


def test_probe_dynamic_false_keeps_declared_dims(tmp_path: Path) -> None:
    path = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(path))
    described = adapter.describe(path, ExportOptions.from_flat(probe_dynamic=False))
    assert described.inputs[0].shape == (-1, 3, -1, -1)
    assert described.outputs[0].shape == (-1, 4, -1, -1)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available")
def test_cuda_request_without_cuda_is_refused(tmp_path: Path) -> None:
    """Same policy as the PyTorch adapter: a device that is not there is a configuration error, not a CPU run."""
    path = tmp_path / "linear.onnx"
    onnx.save(linear_model(), str(path))
    with pytest.raises(ConfigurationError, match="CUDAExecutionProvider"):
        adapter.describe(path, ExportOptions.from_flat(device="cuda"))
    with pytest.raises(ConfigurationError, match="only the CPU and CUDA"):
        adapter.describe(path, ExportOptions.from_flat(device="mps"))


@pytest.mark.cuda
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs onnxruntime-gpu")
def test_cuda_dry_run(tmp_path: Path) -> None:
    path = tmp_path / "linear.onnx"
    onnx.save(linear_model(), str(path))
    described = adapter.describe(path, ExportOptions.from_flat(device="cuda"))
    assert described.accelerator is None  # where the dry-run ran does not bind the file to CUDA
