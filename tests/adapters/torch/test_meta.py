"""Meta runs of the torch adapter: the predicted dry-run peak counts the unfused convolution's column buffer; shape
rules answer common ops, and a light run of a [batch, features] model never imports sympy or torch._dynamo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from mlm_export import inspect_model
from mlm_export.adapters.torch.meta import _live_bytes_mode, conv_workspace_bytes
from mlm_export.probing import ShapeInferenceUnavailable


def _meta_peak(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Peak live bytes of a meta forward (activations only: weights and input exist before the mode starts)."""
    meta, example = model.to("meta"), torch.empty(shape, device="meta")
    mode = _live_bytes_mode("cpu")
    with torch.inference_mode(), mode:
        meta(example)
    return mode.peak


def _allocator_peak(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Peak live bytes that torch's CPU allocator reports to the profiler during one real forward."""
    example = torch.randn(shape)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(example)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _start, change in events:
        live += change
        peak = max(peak, live)
    return peak


def test_small_conv_counts_its_column_buffer() -> None:
    """Batch 1, 3x64x64 (under torch's oneDNN threshold): the unfused kernel's im2col buffer is in the peak."""
    model = nn.Conv2d(3, 4, 3, padding=1).eval()
    columns = 3 * 3 * 3 * 64 * 64 * 4  # C_in x kh x kw x H_out x W_out float32
    output = 4 * 64 * 64 * 4
    assert _meta_peak(model, (1, 3, 64, 64)) == output + columns
    # the allocator sees the same buffers (the input is allocated before the profiler starts)
    assert _allocator_peak(nn.Conv2d(3, 4, 3, padding=1).eval(), (1, 3, 64, 64)) == output + columns


@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (nn.Conv2d(3, 4, 1), (1, 3, 64, 64)),  # 1x1, stride 1, no padding: no columns
    ],
)
def test_convs_without_columns(conv: nn.Conv2d, shape: tuple[int, ...]) -> None:
    out_channels, spatial = conv.out_channels, shape[2] * shape[3]
    assert _meta_peak(conv.eval(), shape) == shape[0] * out_channels * spatial * 4


def test_onednn_conv_counts_its_blocked_copies() -> None:
    """Batch 16 runs on oneDNN: its copies of input, output and weight (16 channels: no padding) are counted."""
    conv = nn.Conv2d(16, 16, 3, padding=1).eval()
    output = data = 16 * 16 * 32 * 32 * 4
    weight = 16 * 16 * 3 * 3 * 4
    assert torch._C._select_conv_backend(torch.empty(16, 16, 32, 32), conv.weight, conv.bias, [1, 1], [1, 1],
                                         [1, 1], False, [0, 0], 1, None) == torch._C._ConvBackend.Mkldnn  # fmt: skip
    assert _meta_peak(conv, (16, 16, 32, 32)) == output + data + output + weight
    # the allocator sees no more than that while the convolution runs (the input is allocated before it starts)
    assert _allocator_peak(conv, (16, 16, 32, 32)) <= output + data + output + weight


def test_workspace_is_zero_off_cpu_and_for_other_ops() -> None:
    data, weight = torch.empty(1, 3, 8, 8, device="meta"), torch.empty(4, 3, 3, 3, device="meta")
    out = torch.empty(1, 4, 6, 6, device="meta")
    conv2d = torch.ops.aten.conv2d.default
    assert conv_workspace_bytes(conv2d, (data, weight), {}, out, "cuda") == 0
    assert conv_workspace_bytes(torch.ops.aten.relu.default, (data,), {}, data, "cpu") == 0
    assert conv_workspace_bytes(conv2d, (data, weight), {}, out, "cpu") == 3 * 9 * 36 * 4


def test_ops_outside_the_table_run_torchs_meta_kernel() -> None:
    """cumsum has no rule: torch's own meta kernel answers it, inside a run whose other ops the rules answer."""
    x = torch.empty(2, 5, 7, device="meta")
    with torch.inference_mode(), _live_bytes_mode("cpu", track=False):
        out = torch.cumsum(torch.relu(x), dim=2)
    assert out.is_meta and tuple(out.shape) == (2, 5, 7) and out.stride() == (35, 7, 1)


def test_a_light_run_stops_before_a_python_meta_kernel() -> None:
    """In a light run, an op whose meta kernel is Python raises before it runs; C++ and composite ops run."""
    x = torch.empty(2, 6, device="meta")
    with torch.inference_mode(), _live_bytes_mode("cpu", track=False, light=True):
        flat = x.unsqueeze(1).flatten(1)  # unsqueeze: a C++ meta kernel; flatten: a composite of a view
        assert tuple(flat.shape) == (2, 6)
        with pytest.raises(ShapeInferenceUnavailable, match="aten::cumsum"):
            torch.cumsum(flat, dim=1)


#: Probes an MLP in a fresh interpreter: its probe paths, its input and output shapes and the heavy imports it made.
LIGHT_SCRIPT = """
import json, logging, sys, tempfile, threading, warnings
import torch
from torch import nn
from mlm_export import inspect_model

paths = []
class Paths(logging.Handler):
    def emit(self, record):
        paths.append(record.getMessage())
logger = logging.getLogger("mlm_export.probing")
logger.setLevel(logging.DEBUG)
logger.addHandler(Paths())
layers = [nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10)]
if sys.argv[1] == "softmax":
    layers.append(nn.Softmax(dim=1))  # aten._softmax: a Python meta kernel only
with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
    warnings.simplefilter("ignore")
    description = inspect_model(nn.Sequential(*layers), artifact_dir=tmp, input_shape=[-1, 64])
print(json.dumps({
    "paths": paths, "input": description.inputs[0].shape, "output": description.outputs[0].shape,
    "heavy": sorted(name for name in ("sympy", "torch._dynamo") if name in sys.modules),
    "threads": [thread.name for thread in threading.enumerate() if thread.name.startswith("mlm-export")],
}))
"""


def _light_probe(variant: str) -> dict[str, object]:
    env = {"MLM_EXPORT_VERIFY_PROBES": "0"}
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_SCRIPT, variant], capture_output=True, text=True, timeout=300,
        env={**os.environ, **env, "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_mlp_is_probed_on_shapes_without_sympy_or_dynamo() -> None:
    """Linear, ReLU, Flatten and Dropout are answered by rules or C++ kernels: the batch probe needs no real forward."""
    found = _light_probe("plain")
    assert found["heavy"] == []
    assert "probe batch +1: shapes" in found["paths"]
    assert found["input"] == [-1, 64] and found["output"] == [-1, 10]


def test_an_mlp_with_a_python_meta_kernel_is_probed_for_real() -> None:
    """Softmax has only a Python meta kernel: the light run stops there and the batch probe runs for real."""
    found = _light_probe("softmax")
    assert found["heavy"] == []
    assert any(p.startswith("probe base: real (shapes alone could not run") for p in found["paths"])
    assert "probe batch +1: real" in found["paths"]
    assert found["input"] == [-1, 64] and found["output"] == [-1, 10]
    # The real runs imported the Item's modules in a daemon thread; it is done when inspect_model returns. One left
    # running at exit aborted this process about once in 60 runs ("FATAL: exception not rethrown").
    assert found["threads"] == []


class _CachedGrid(nn.Module):
    """Caches a tensor of the input's size in an attribute that starts as None."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.grid: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid is None or self.grid.shape != x.shape[-2:]:
            self.grid = torch.zeros(x.shape[-2:], device=x.device)
        return self.conv(x) + self.grid


def test_an_attribute_cached_during_a_meta_run_gets_its_old_value_back(tmp_path: Path) -> None:
    """A cache that was None before a meta run is None again after it (not deleted), so real runs still work."""
    model = _CachedGrid()
    described = inspect_model(model, artifact_dir=tmp_path, input_shape=[-1, 3, -1, -1])
    assert described.inputs[0].shape == (-1, 3, -1, -1)
    assert described.outputs[0].shape == (-1, 4, -1, -1)
    assert model.grid is None or not model.grid.is_meta
