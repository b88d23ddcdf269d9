"""Probing on shapes alone (fake tensors, ONNX shape inference) agrees with probing by real forwards.

Every model family the suite exports is probed both ways (``MLM_EXPORT_VERIFY_PROBES=1`` makes :func:`probe`
rerun with real forwards only and fail on any difference; ``tests/conftest.py`` sets it for the whole suite). The
debug log must show that the shape-only path was taken, and a model that fake tensors cannot run falls back to real
forwards, with the reason logged. The extra-slices rule (a dimension the model accepts but ignores is fixed) is
checked on a change-detection net.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx_models as om
import pytest
import torch
import torch_models as tm
from torch import nn

from mlm_export import inspect_model
from mlm_export.errors import DryRunMemoryError, ProbeError
from mlm_export.policy import out_of_memory

sys.path.insert(0, str(Path(__file__).parent / "adapters" / "torch"))
from torch_truth import CASE_IDS, CASES

from mlm_export.probing import (
    VERIFY_ENV,
    MeasuredTensor,
    ProbeInput,
    ShapeInferenceUnavailable,
    probe,
    verify_same,
    warm_imports,
)


@pytest.fixture(autouse=True)
def _verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VERIFY_ENV, "1")


def _paths(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mlm_export.probing"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_shapes_and_real_agree_on_every_family(case, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Both paths give the same shapes, dim orders, outputs and notes; probes took the shape-only path."""
    torch.manual_seed(0)
    model = case.factory(**case.kwargs)
    caplog.set_level(logging.DEBUG, logger="mlm_export.probing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspect_model(model, artifact_dir=tmp_path, **case.export_kwargs())  # raises AssertionError on a mismatch
    paths = _paths(caplog)
    if all(t.dim() <= 2 for t in case.make_inputs(1, 0)) and "torch._dynamo" not in sys.modules:
        return  # [batch, features] models are probed with real forwards (adapters/torch/meta.py)
    assert "probe base: shapes" in paths
    assert any(p.startswith("probe batch +1: shapes") for p in paths)


@pytest.mark.parametrize(
    "factory",
    [tm.NaNNet, tm.MixedOutputNet, tm.BFloat16OutputNet, lambda: tm.TinyConvNet(4, 5), lambda: tm.DictInputNet(3)],
    ids=["nan", "mixed_output", "bf16_output", "tiny_conv", "dict_input"],
)
def test_shapes_and_real_agree_on_odd_outputs(factory, tmp_path: Path) -> None:
    """NaN, non-tensor and bfloat16 outputs, BatchNorm buffers and a dict input probe the same both ways."""
    model = factory()
    kwargs = {"example_input": {"image": torch.randn(1, 3, 32, 32)}} if isinstance(model, tm.DictInputNet) else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspect_model(model, artifact_dir=tmp_path, **kwargs)


class DataDependentNet(nn.Module):
    """Branches on a value (``.item()``): fake tensors cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled by a data-dependent factor."""
        factor = 2.0 if x.mean().item() > 0 else 1.0
        return self.conv(x) * factor


def test_fake_failure_falls_back_to_real(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A forward with .item() runs every probe for real; the log says why; the result is the real one."""
    caplog.set_level(logging.DEBUG, logger="mlm_export.probing")
    described = inspect_model(DataDependentNet(), artifact_dir=tmp_path, input_shape=[-1, 3, -1, -1])
    assert described.inputs[0].shape == (-1, 3, -1, -1)
    assert described.outputs[0].shape == (-1, 4, -1, -1)
    paths = _paths(caplog)
    assert any(p.startswith("probe base: real (shapes alone could not run") for p in paths)
    assert "probe batch +1: real" in paths


class ChangeDetectionNet(nn.Module):
    """Reads the first two time steps of [B, T, C, H, W] and nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Change map of steps 0 and 1."""
        return self.conv(torch.cat([x[:, 0], x[:, 1]], dim=1))


def test_ignored_time_steps_fix_the_time_axis(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Time runs at 3..72 steps but extra steps do not change the output: fixed at the example's 4 steps."""
    caplog.set_level(logging.DEBUG, logger="mlm_export.probing")
    described = inspect_model(ChangeDetectionNet(), artifact_dir=tmp_path, example_input=torch.randn(1, 4, 3, 32, 32))
    assert described.inputs[0].shape == (-1, 4, 3, -1, -1)
    assert described.outputs[0].shape == (-1, 2, -1, -1)
    assert any("extra slices do not change the output; fixed at 4" in n for n in described.notes)
    assert any("time extra slices" in p and "did not change the output" in p for p in _paths(caplog))


class MeanOverTimeNet(nn.Module):
    """Averages every time step: extra steps change the output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the mean step."""
        return self.fc(x.mean(1))


def test_used_time_steps_stay_dynamic(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A sequence net that reads every step is dynamic in time, decided by real runs at the smallest sizes."""
    caplog.set_level(logging.DEBUG, logger="mlm_export.probing")
    described = inspect_model(MeanOverTimeNet(), artifact_dir=tmp_path, example_input=torch.randn(1, 8, 5))
    assert described.inputs[0].shape == (-1, -1, 5)
    decided = [p for p in _paths(caplog) if "time extra slices" in p]
    assert decided and "[1, 2, 5]" in decided[0] and "changed the output" in decided[0]


def test_onnx_probes_by_shape_inference(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An ONNX conv graph is probed by shape inference and agrees with onnxruntime probing."""
    import onnx

    path = tmp_path / "conv.onnx"
    onnx.save(om.conv_model(3, 4), str(path))
    caplog.set_level(logging.DEBUG, logger="mlm_export.probing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspect_model(path)
    paths = _paths(caplog)
    assert "probe base: shapes" in paths
    assert any(p.startswith("probe batch +1: shapes") for p in paths)


class _ListBackend:
    """A numpy model y = x[:, :2].sum(1) whose shape-only run cannot do width 9 (falls back)."""

    def __init__(self) -> None:
        self.real_shapes: list[tuple[int, ...]] = []

    def infer(self, shapes):
        (shape,) = shapes
        if shape[1] == 9:
            raise ShapeInferenceUnavailable("no kernel")
        if shape[1] < 2:
            raise ValueError("needs two columns")
        return [MeasuredTensor("y", (shape[0],), "float64")]

    def run(self, shapes, keep=None):
        (shape,) = shapes
        self.real_shapes.append(shape)
        if shape[1] < 2:
            raise ValueError("needs two columns")
        x = np.random.default_rng(0).standard_normal(shape)
        if keep is not None:
            other = np.random.default_rng(1).standard_normal(shape)
            other[: keep[0][0], : keep[0][1]] = x[: keep[0][0], : keep[0][1]]
            x = other
        y = x[:, :2].sum(1)
        return [MeasuredTensor("y", y.shape, "float64", values=y)]

    def same_values(self, a, b):
        return a.values.shape == b.values.shape and bool(np.allclose(a.values, b.values))


def test_probe_with_a_plain_backend() -> None:
    """Framework-neutral: fallback per probe, ignored columns fixed, both paths equal, bad base reported."""
    backend = _ListBackend()
    spec = [ProbeInput("x", (-1, 4), "float64", layout="sequence", dim_order=("batch", "time"))]
    shaped = probe(backend, spec, base_shapes=[(1, 2)])
    real = probe(backend, spec, base_shapes=[(1, 2)], shapes_first=False)
    verify_same(shaped, real)
    assert shaped.input_shapes == ((-1, 2),)
    assert shaped.outputs[0].shape == (-1,)
    assert shaped.runs < real.runs
    assert "time +7: real (shapes alone could not tell: no kernel)" in shaped.paths
    with pytest.raises(ProbeError, match=r"\[1, 1\]"):
        probe(backend, spec, base_shapes=[(1, 1)])


def test_warm_imports_imports_beside_and_leaves_failures_to_the_caller() -> None:
    """Modules not yet imported are imported in a thread; a missing one is skipped there (the caller reports it)."""
    sys.modules.pop("colorsys", None)
    thread = warm_imports(["colorsys", "mlm_export_no_such_module"])
    assert thread is not None
    thread.join(timeout=30)
    assert "colorsys" in sys.modules
    assert "mlm_export_no_such_module" not in sys.modules
    assert warm_imports(["colorsys"]) is None  # all imported already: no thread


def test_onnxruntime_allocation_failure_is_reported_not_taken_as_refusal(tmp_path: Path) -> None:
    """onnxruntime's arena fails for real at a wider probe: DryRunMemoryError naming the shape, no fixed width."""
    import onnx

    path = tmp_path / "allocating.onnx"
    onnx.save(om.allocating_model(base_width=64), str(path))
    shape = r"ran out of memory on inputs of shape \[1, 3, \d+, (96|71|128)\]"
    with pytest.raises(DryRunMemoryError, match=shape) as info:
        inspect_model(path)
    # onnxruntime's own error, kept as the cause (the dry-run session has no arena: std::bad_alloc)
    assert "bad_alloc" in str(info.value.__cause__) or "Failed to allocate memory" in str(info.value.__cause__)
    assert isinstance(info.value, MemoryError)


class OutOfDeviceMemoryNet(nn.Module):
    """Runs on meta tensors at any size; for real, wider than 64 px it fails as a full accelerator does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """torch.OutOfMemoryError above 64 px, except in a shape-only run."""
        if x.device.type != "meta" and not isinstance(x, torch._subclasses.FakeTensor) and x.shape[-1] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.conv(x)


def test_torch_out_of_memory_in_a_real_probe_is_reported(tmp_path: Path) -> None:
    """A probe that runs out of memory ends the dry-run with DryRunMemoryError (exit 1), not a fixed width."""
    with pytest.raises(DryRunMemoryError, match=r"ran out of memory on inputs of shape .*CUDA out of memory"):
        inspect_model(OutOfDeviceMemoryNet(), artifact_dir=tmp_path, input_shape=[-1, 3, -1, -1])


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (MemoryError(), True),
        (torch.OutOfMemoryError("CUDA out of memory"), True),
        (RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad allocation"), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)"), False),
        (ValueError("needs two columns"), False),
    ],
)
def test_out_of_memory_tells_allocation_failures_from_refusals(error: BaseException, expected: bool) -> None:
    assert out_of_memory(error) is expected
