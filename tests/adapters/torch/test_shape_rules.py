"""Shape rules of meta runs: each rule gives what torch's own meta kernel gives, and a real CPU run agrees."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch

from mlm_export.adapters.torch.shape_rules import fast_result, meta_kernel_kind

aten = torch.ops.aten
CHANNELS_LAST = torch.channels_last
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _tensor(shape: tuple[int, ...], dtype: torch.dtype, device: str, layout: Any = None) -> torch.Tensor:
    values = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    values = values.contiguous(memory_format=layout) if layout is not None else values
    return values.to(device) if device == "cpu" else torch.empty_strided(
        shape, values.stride(), dtype=dtype, device="meta")  # fmt: skip


def _facts(tensor: torch.Tensor) -> tuple[Any, ...]:
    return tuple(tensor.shape), tensor.dtype, tensor.stride()


def _check(op: Any, build: Callable[[str], tuple[list[Any], dict[str, Any]]]) -> None:
    """The rule answers; shape, dtype and strides equal those of torch's meta kernel and of a real CPU run."""
    args, kwargs = build("meta")
    with torch.inference_mode():
        fast = fast_result(op, args, kwargs)
        assert fast is not None, f"{op} deferred on {[getattr(a, 'shape', a) for a in args]}"
        meta = op(*args, **kwargs)
        cpu_args, cpu_kwargs = build("cpu")
        real = op(*cpu_args, **cpu_kwargs)
    assert fast.is_meta
    assert _facts(fast) == _facts(meta)
    assert _facts(fast) == _facts(real)


CONV_CASES = [
    # (input shape, weight shape, stride, padding, dilation, groups)
    ((1, 3, 17, 16), (4, 3, 3, 3), [1, 1], [1, 1], [1, 1], 1),
    ((2, 4, 16, 13), (8, 2, 3, 5), [2, 1], [0, 2], [1, 1], 2),
    ((1, 6, 20, 20), (6, 1, 3, 3), [2], [1], [2], 6),  # depthwise, dilated, one value for both axes
    ((2, 3, 9, 9), (5, 3, 1, 1), [3, 3], [0, 0], [1, 1], 1),
    ((1, 2, 7, 8), (4, 2, 7, 8), [1, 1], [0, 0], [1, 1], 1),  # output 1x1
]


@pytest.mark.parametrize(("case", "dtype", "bias"), list(itertools.product(CONV_CASES, DTYPES, (True, False))))
def test_conv2d(case: tuple[Any, ...], dtype: torch.dtype, bias: bool) -> None:
    shape, weight, stride, padding, dilation, groups = case

    def build(device: str) -> tuple[list[Any], dict[str, Any]]:
        b = _tensor((weight[0],), dtype, device) if bias else None
        return [_tensor(shape, dtype, device), _tensor(weight, dtype, device), b, stride, padding, dilation,
                groups], {}  # fmt: skip

    _check(aten.conv2d.default, build)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_and_conv3d(dtype: torch.dtype) -> None:
    _check(aten.conv1d.default, lambda d: ([_tensor((2, 4, 30), dtype, d), _tensor((6, 4, 5), dtype, d), None,
                                            [2], [1], [3], 1], {}))  # fmt: skip
    _check(aten.conv3d.default, lambda d: ([_tensor((1, 2, 6, 7, 8), dtype, d), _tensor((3, 2, 3, 3, 3), dtype, d),
                                            None, [1, 2, 1], [1, 0, 1], [1], 1], {}))  # fmt: skip


def _batch_norm_args(shape: tuple[int, ...], dtype: torch.dtype, layout: Any, device: str) -> list[Any]:
    channels = (shape[1],)
    stats = [_tensor(channels, dtype, device) for _ in range(3)]
    var = _tensor(channels, dtype, device).abs() if device == "cpu" else _tensor(channels, dtype, device)
    return [_tensor(shape, dtype, device, layout), stats[0], stats[1], stats[2], var, False, 0.1, 1e-5, True]


@pytest.mark.parametrize(
    ("shape", "layout", "dtype"),
    [
        *[((2, 3, 5, 7), layout, dtype) for layout in (None, CHANNELS_LAST) for dtype in DTYPES],
        ((1, 1, 4, 4), CHANNELS_LAST, torch.float32),
        ((3, 8, 1, 1), CHANNELS_LAST, torch.float32),
        ((4, 16), None, torch.float32),  # BatchNorm1d on [batch, features]
        ((2, 5, 9), None, torch.bfloat16),
    ],
)
def test_eval_batch_norm(shape: tuple[int, ...], layout: Any, dtype: torch.dtype) -> None:
    _check(aten.batch_norm.default, lambda d: (_batch_norm_args(shape, dtype, layout, d), {}))


@pytest.mark.parametrize(
    ("x", "weight", "bias", "dtype"),
    [
        ((3, 16), (8, 16), True, torch.float32),
        ((2, 5, 16), (8, 16), False, torch.float16),
        ((2, 2, 3, 16), (4, 16), True, torch.bfloat16),
        ((1, 4096), (4096, 4096), True, torch.float32),
    ],
)
def test_linear(x: tuple[int, ...], weight: tuple[int, ...], bias: bool, dtype: torch.dtype) -> None:
    def build(device: str) -> tuple[list[Any], dict[str, Any]]:
        b = _tensor((weight[0],), dtype, device) if bias else None
        return [_tensor(x, dtype, device), _tensor(weight, dtype, device), b], {}

    _check(aten.linear.default, build)


def test_linear_with_a_transposed_weight_and_input() -> None:
    """A tied weight used transposed, and a transposed 2-d input: the output is a new contiguous matrix."""
    _check(aten.linear.default, lambda d: ([_tensor((16, 3), torch.float32, d).t(),
                                            _tensor((16, 8), torch.float32, d).t(), None], {}))  # fmt: skip


@pytest.mark.parametrize(("shape", "normalized"), [((2, 5, 16), [16]), ((1, 4, 6, 8), [6, 8]), ((3, 7), [7])])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm(shape: tuple[int, ...], normalized: list[int], dtype: torch.dtype) -> None:
    normalized_shape = tuple(normalized)
    _check(aten.layer_norm.default, lambda d: ([_tensor(shape, dtype, d), normalized,
                                                _tensor(normalized_shape, dtype, d),
                                                _tensor(normalized_shape, dtype, d), 1e-5, True], {}))  # fmt: skip


UNARY = [
    (aten.relu.default, ()), (aten.gelu.default, ()), (aten.silu.default, ()), (aten.sigmoid.default, ()),
    (aten.tanh.default, ()), (aten.hardswish.default, ()), (aten.relu6.default, ()), (aten.mish.default, ()),
    (aten.hardsigmoid.default, ()),
    (aten.hardtanh.default, (-2.0, 3.0)), (aten.leaky_relu.default, (0.2,)), (aten.elu.default, (1.0, 1, 1)),
]  # fmt: skip


@pytest.mark.parametrize(("op", "extra"), UNARY)
@pytest.mark.parametrize(("layout", "dtype"), [(None, torch.float32), (CHANNELS_LAST, torch.float16),
                                               (None, torch.bfloat16)])  # fmt: skip
def test_activations(op: Any, extra: tuple[Any, ...], layout: Any, dtype: torch.dtype) -> None:
    _check(op, lambda d: ([_tensor((2, 3, 4, 5), dtype, d, layout), *extra], {}))


def test_gelu_tanh_and_in_place_activations_return_their_input() -> None:
    _check(aten.gelu.default, lambda d: ([_tensor((2, 8), torch.float32, d)], {"approximate": "tanh"}))
    x = torch.empty(2, 3, 4, 4, device="meta")
    for op, extra in [(aten.relu_.default, ()), (aten.hardtanh_.default, (0.0, 6.0)), (aten.silu_.default, ())]:
        assert fast_result(op, (x, *extra), {}) is x


@pytest.mark.parametrize("op", [aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor])
@pytest.mark.parametrize(("layout", "dtype"), [(None, torch.float32), (CHANNELS_LAST, torch.bfloat16)])
def test_binary_ops(op: Any, layout: Any, dtype: torch.dtype) -> None:
    shape = (2, 3, 4, 5)
    _check(op, lambda d: ([_tensor(shape, dtype, d, layout), _tensor(shape, dtype, d, layout)], {}))
    _check(op, lambda d: ([_tensor(shape, dtype, d, layout), 2.5], {}))
    x, y = torch.empty(shape, dtype=dtype, device="meta"), torch.empty(shape, dtype=dtype, device="meta")
    assert fast_result(aten.add_.Tensor, (x, y), {"alpha": 2}) is x


def _deferred_cases() -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    """Inputs each rule leaves to torch: other dtypes and layouts, sizes torch refuses, training mode."""
    meta = "meta"
    x = _tensor((1, 3, 8, 8), torch.float32, meta)
    w = _tensor((4, 3, 3, 3), torch.float32, meta)
    stats = [_tensor((3,), torch.float32, meta) for _ in range(4)]
    return [
        (aten.conv2d.default, (x.to(torch.float64), w.to(torch.float64), None, [1], [0], [1], 1), {}),
        (aten.conv2d.default, (x.contiguous(memory_format=CHANNELS_LAST), w, None, [1], [0], [1], 1), {}),
        (aten.conv2d.default, (x, w, None, [1], [-1], [1], 1), {}),  # negative padding: torch's error
        (aten.conv2d.default, (x, w, None, [1], [0], [1], 2), {}),  # 3 channels do not split into 2 groups
        (aten.conv2d.default, (x[..., :2, :2], w, None, [1], [0], [1], 1), {}),  # kernel larger than the input
        (aten.conv2d.default, (x[0], w, None, [1], [0], [1], 1), {}),  # unbatched
        (aten.conv2d.default, (x, w, _tensor((5,), torch.float32, meta), [1], [0], [1], 1), {}),  # bias size
        (aten.linear.default, (_tensor((2, 7), torch.float32, meta), _tensor((4, 8), torch.float32, meta)), {}),
        (aten.linear.default, (_tensor((2, 8), torch.float16, meta), _tensor((4, 8), torch.float32, meta)), {}),
        (
            aten.linear.default,
            (_tensor((3, 2, 8), torch.float32, meta).transpose(0, 1), _tensor((4, 8), torch.float32, meta)),
            {},
        ),  # fmt: skip
        (aten.batch_norm.default, (x, *stats, True, 0.1, 1e-5, True), {}),  # training
        (aten.batch_norm.default, (x, stats[0], stats[1], None, None, False, 0.1, 1e-5, True), {}),
        (aten.layer_norm.default, (x, [7]), {}),
        (aten.relu.default, (_tensor((2, 3), torch.int64, meta),), {}),
        (aten.relu.default, (x.transpose(2, 3),), {}),  # not dense in a known order
        (aten.gelu.default, (x,), {"approximate": "cubic"}),
        (aten.add.Tensor, (x, _tensor((1, 3, 1, 1), torch.float32, meta)), {}),  # broadcasting
        (aten.add.Tensor, (x, x.to(torch.float16)), {}),  # type promotion
        (aten.add_.Tensor, (x[:, :1], x), {}),  # in place into a smaller tensor: torch's error
        (aten.relu.default, (torch.empty(2, 3),), {}),  # a CPU tensor
        (aten.relu.default, (torch.empty(0, 3, device=meta),), {}),  # an empty tensor
    ]


@pytest.mark.parametrize(("op", "args", "kwargs"), _deferred_cases())
def test_rules_defer_what_they_are_not_sure_of(op: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert fast_result(op, args, kwargs) is None


def test_ops_outside_the_table_are_not_answered() -> None:
    x = torch.empty(2, 3, device="meta")
    assert fast_result(aten.cumsum.default, (x, 1), {}) is None
    assert fast_result(aten.view.default, (x, [3, 2]), {}) is None


def test_meta_kernel_kinds() -> None:
    """relu's meta kernel is a torch._refs decomposition, view's is C++, flatten decomposes into view; a C++
    composite counts as C++ only for a view or a copy."""
    assert meta_kernel_kind(aten.relu.default) == "python"
    assert meta_kernel_kind(aten.addmm.default) == "python"
    assert meta_kernel_kind(aten.view.default) == "c++"
    assert meta_kernel_kind(aten.t.default) == "c++"
    assert meta_kernel_kind(aten.clone.default) == "c++"
    assert meta_kernel_kind(aten.flatten.using_ints) == "composite"
    assert meta_kernel_kind(aten.constant_pad_nd.default) == "python"  # a C++ composite calling unseen ops
