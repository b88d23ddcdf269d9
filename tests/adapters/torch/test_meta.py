"""Meta runs of the torch adapter: the predicted dry-run peak counts the unfused convolution's column buffer."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from mlm_export.adapters.torch.meta import _live_bytes_mode, conv_workspace_bytes


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
        (nn.Conv2d(16, 16, 3, padding=1), (16, 16, 32, 32)),  # batch 16: oneDNN, its scratch is not counted
    ],
)
def test_convs_without_columns(conv: nn.Conv2d, shape: tuple[int, ...]) -> None:
    out_channels, spatial = conv.out_channels, shape[2] * shape[3]
    assert _meta_peak(conv.eval(), shape) == shape[0] * out_channels * spatial * 4


def test_workspace_is_zero_off_cpu_and_for_other_ops() -> None:
    data, weight = torch.empty(1, 3, 8, 8, device="meta"), torch.empty(4, 3, 3, 3, device="meta")
    out = torch.empty(1, 4, 6, 6, device="meta")
    conv2d = torch.ops.aten.conv2d.default
    assert conv_workspace_bytes(conv2d, (data, weight), {}, out, "cuda") == 0
    assert conv_workspace_bytes(torch.ops.aten.relu.default, (data,), {}, data, "cpu") == 0
    assert conv_workspace_bytes(conv2d, (data, weight), {}, out, "cpu") == 3 * 9 * 36 * 4
