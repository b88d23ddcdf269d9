"""Shape rules for meta runs: the outputs of common ops computed directly, without torch's Python meta kernels.

On the meta device most ops run a meta kernel written in Python (``torch/_meta_registrations.py``, or a
``torch._refs`` decomposition): eval batch norm decomposes into a dozen elementwise refs that each compute broadcast
shapes and stride permutations in Python, so one meta forward of a ResNet-50 costs half a real one on a CPU. The
first of them also imports sympy (``torch._check``) and ``torch._dynamo`` (the ``torch._refs`` wrappers): about as
long as ``import torch``. :func:`fast_result` answers a small table of ops with an empty meta tensor of the shape,
dtype and strides that torch's own meta kernel gives (tests compare each rule with it and with a real CPU run), and
returns None for anything it is not sure of (another dtype, layout or argument, a size that torch would refuse):
the caller then runs torch's kernel, which also raises torch's own errors.

The table holds the ops a dispatch mode sees at the top of common models in inference mode (composite ops such as
``linear`` and ``batch_norm`` reach the mode before they decompose): ``linear``, ``conv1d/2d/3d`` (not transposed),
eval ``batch_norm``, ``layer_norm``, shape-preserving activations (``relu``, ``gelu``, ``silu``, ``sigmoid``...,
also in place) and ``add``/``sub``/``mul`` of equal shapes or with a scalar. :func:`meta_kernel_kind` tells whether
any other op's meta kernel is C++ (cheap), a composite (decomposes into other ops) or Python.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

#: Dtypes the rules accept; any other (integers, float64, complex) goes to torch's kernels.
FLOATS = (torch.float32, torch.float16, torch.bfloat16)

Rule = Callable[[dict[str, Any]], Any]
CL = torch.channels_last
#: Tensor classes the rules accept (subclasses, such as fake or distributed tensors, have their own dispatch).
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


@functools.lru_cache(maxsize=4096)
def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _channels_last_strides(shape: Sequence[int]) -> tuple[int, ...]:
    n, c, h, w = shape
    c, h, w = max(c, 1), max(h, 1), max(w, 1)
    return (h * w * c, 1, w * c, c)


def _plain(value: Any) -> bool:
    """A strided meta tensor with concrete (not symbolic) sizes, no zero size, and one of :data:`FLOATS`."""
    return (
        type(value) in _TENSOR_TYPES
        and value.is_meta
        and value.dtype in FLOATS
        and value.layout == torch.strided
        and not value._has_symbolic_sizes_strides
        and 0 not in value.shape
    )


def _dense_strides(tensor: torch.Tensor, channels_last: bool = True) -> tuple[int, ...] | None:
    """The tensor's strides when they are exactly contiguous (or exactly channels-last, 4-d), else None.

    Without a size-1 axis, torch's ``is_contiguous`` says it (in C++); with one, whose stride torch ignores, the
    strides are compared with the standard ones.
    """
    shape, strides = tensor.shape, tensor.stride()
    if 1 not in shape:
        cl = channels_last and tensor.dim() == 4
        return strides if tensor.is_contiguous() or (cl and tensor.is_contiguous(memory_format=CL)) else None
    if strides == _contiguous_strides(shape):
        return strides
    if channels_last and tensor.dim() == 4 and strides == _channels_last_strides(shape):
        return strides
    return None


def _like(tensor: torch.Tensor, strides: Sequence[int]) -> torch.Tensor:
    return torch.empty_strided(tuple(tensor.shape), tuple(strides), dtype=tensor.dtype, device="meta")


def _new(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def _vector_of(value: Any, size: int, dtype: torch.dtype) -> bool:
    """None, or a meta tensor of shape [size] and ``dtype`` (a weight, bias or running statistic)."""
    return value is None or (_plain(value) and tuple(value.shape) == (size,) and value.dtype == dtype)


def _numbers(*values: Any) -> bool:
    return all(type(v) in (int, float) for v in values)


def _unary(bound: dict[str, Any]) -> torch.Tensor | None:
    """An activation of the same shape: a new tensor with the input's (dense) strides."""
    x = bound["self"]
    strides = _dense_strides(x) if _plain(x) else None
    return None if strides is None else _like(x, strides)


def _unary_in_place(bound: dict[str, Any]) -> torch.Tensor | None:
    """An activation in place: the input itself."""
    x = bound["self"]
    return x if _plain(x) and _dense_strides(x) is not None else None


def _scalar_arguments(*names: str) -> Callable[[Rule], Rule]:
    """A rule that also requires the named arguments to be Python numbers."""

    def wrap(rule: Rule) -> Rule:
        def checked(bound: dict[str, Any]) -> Any:
            return rule(bound) if _numbers(*(bound[n] for n in names)) else None

        return checked

    return wrap


def _gelu(bound: dict[str, Any]) -> torch.Tensor | None:
    return _unary(bound) if bound["approximate"] in ("none", "tanh") else None


def _gelu_(bound: dict[str, Any]) -> torch.Tensor | None:
    return _unary_in_place(bound) if bound["approximate"] in ("none", "tanh") else None


def _same_operand(bound: dict[str, Any]) -> tuple[torch.Tensor, tuple[int, ...]] | None:
    """(self, strides) of a binary op whose other operand has the same shape, strides and dtype, or is a number."""
    x, other = bound["self"], bound["other"]
    if not _plain(x) or not _numbers(bound.get("alpha", 1)):
        return None
    strides = _dense_strides(x)
    if strides is None:
        return None
    if _numbers(other):
        return x, strides
    if _plain(other) and other.dtype == x.dtype and other.shape == x.shape and tuple(other.stride()) == strides:
        return x, strides
    return None


def _binary(bound: dict[str, Any]) -> torch.Tensor | None:
    same = _same_operand(bound)
    return None if same is None else _like(*same)


def _binary_in_place(bound: dict[str, Any]) -> torch.Tensor | None:
    same = _same_operand(bound)
    return None if same is None else same[0]


def _linear(bound: dict[str, Any]) -> torch.Tensor | None:
    """``x @ weight.T + bias``: [..., in] x [out, in] -> [..., out], contiguous (addmm / matmul on a view)."""
    x, weight, bias = bound["input"], bound["weight"], bound["bias"]
    if not (_plain(x) and _plain(weight) and weight.dim() == 2 and x.dim() >= 2 and weight.dtype == x.dtype):
        return None
    if x.shape[-1] != weight.shape[1] or not _vector_of(bias, weight.shape[0], x.dtype):
        return None
    if x.dim() > 2 and _dense_strides(x, channels_last=False) is None:
        return None  # matmul reshapes a non-contiguous input: left to torch
    return _new((*x.shape[:-1], weight.shape[0]), x.dtype)


def per_axis(value: Any, rank: int) -> tuple[int, ...] | None:
    """An int list of one value or one per spatial axis, as a tuple of ``rank`` ints; None when it is not."""
    values = tuple(value) if isinstance(value, (list, tuple)) else ()
    if not values or not all(type(v) is int for v in values) or len(values) not in (1, rank):
        return None
    return values * rank if len(values) == 1 else values


def _convolution(bound: dict[str, Any]) -> torch.Tensor | None:
    """A batched, non-transposed convolution of contiguous tensors: [N, C_in, *S] -> [N, C_out, *S_out]."""
    x, weight, bias, groups = bound["input"], bound["weight"], bound["bias"], bound["groups"]
    if not (_plain(x) and _plain(weight) and x.dim() == weight.dim() >= 3 and weight.dtype == x.dtype):
        return None
    if _dense_strides(x, channels_last=False) is None or _dense_strides(weight, channels_last=False) is None:
        return None  # channels-last: the meta kernel and the CPU disagree on the output's layout
    rank = x.dim() - 2
    stride, padding, dilation = (per_axis(bound[n], rank) for n in ("stride", "padding", "dilation"))
    if stride is None or padding is None or dilation is None or type(groups) is not int or groups < 1:
        return None
    out_channels = weight.shape[0]
    valid = (
        min(stride) >= 1 and min(padding) >= 0 and min(dilation) >= 1 and out_channels % groups == 0
        and x.shape[1] == weight.shape[1] * groups and _vector_of(bias, out_channels, x.dtype)
    )  # fmt: skip
    if not valid:
        return None
    spatial = [
        (size + 2 * pad - dil * (kernel - 1) - 1) // step + 1
        for size, kernel, step, pad, dil in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation, strict=True)
    ]
    return _new((x.shape[0], out_channels, *spatial), x.dtype) if min(spatial) >= 1 else None


def _batch_norm(bound: dict[str, Any]) -> torch.Tensor | None:
    """Eval batch norm with running statistics: the input's shape and (dense) strides."""
    x = bound["input"]
    if bound["training"] is not False or not _plain(x) or x.dim() < 2 or not _numbers(bound["momentum"], bound["eps"]):
        return None
    vectors = (bound["weight"], bound["bias"], bound["running_mean"], bound["running_var"])
    if vectors[2] is None or vectors[3] is None or not all(_vector_of(v, x.shape[1], x.dtype) for v in vectors):
        return None
    strides = _dense_strides(x)
    return None if strides is None else _like(x, strides)


def _layer_norm(bound: dict[str, Any]) -> torch.Tensor | None:
    """Layer norm over the trailing ``normalized_shape`` of a contiguous input: a contiguous tensor of its shape."""
    x, normalized = bound["input"], bound["normalized_shape"]
    if not _plain(x) or _dense_strides(x, channels_last=False) is None or not _numbers(bound["eps"]):
        return None
    normalized = tuple(normalized) if isinstance(normalized, (list, tuple)) else ()
    if not normalized or len(normalized) > x.dim() or tuple(x.shape[x.dim() - len(normalized) :]) != normalized:
        return None
    for name in ("weight", "bias"):
        value = bound[name]
        if value is not None and not (_plain(value) and tuple(value.shape) == normalized and value.dtype == x.dtype):
            return None
    return _like(x, _contiguous_strides(x.shape))


def _rules() -> dict[str, Rule]:
    """Op name (``namespace::name.overload``) -> rule."""
    rules: dict[str, Rule] = {
        "aten::linear": _linear,
        "aten::conv1d": _convolution,
        "aten::conv2d": _convolution,
        "aten::conv3d": _convolution,
        "aten::batch_norm": _batch_norm,
        "aten::layer_norm": _layer_norm,
        "aten::gelu": _gelu,
        "aten::gelu_": _gelu_,
        "aten::hardtanh": _scalar_arguments("min_val", "max_val")(_unary),
        "aten::hardtanh_": _scalar_arguments("min_val", "max_val")(_unary_in_place),
        "aten::leaky_relu": _scalar_arguments("negative_slope")(_unary),
        "aten::leaky_relu_": _scalar_arguments("negative_slope")(_unary_in_place),
        "aten::elu": _scalar_arguments("alpha", "scale", "input_scale")(_unary),
        "aten::elu_": _scalar_arguments("alpha", "scale", "input_scale")(_unary_in_place),
    }
    for name in ("relu", "relu6", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "mish"):
        rules[f"aten::{name}"] = _unary
        rules[f"aten::{name}_"] = _unary_in_place
    for name in ("add", "sub", "mul"):
        rules[f"aten::{name}.Tensor"] = _binary
        rules[f"aten::{name}_.Tensor"] = _binary_in_place
    return rules


_RULES = _rules()


_MISSING = object()


@functools.cache
def _signature(func: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(argument names, defaults) of op ``func`` from its schema (``_MISSING`` where there is no default)."""
    defaults = {a.name: a.default_value if a.has_default_value() else _MISSING for a in func._schema.arguments}
    return tuple(defaults), defaults


@functools.cache
def _entry(func: Any) -> tuple[Rule, tuple[str, ...], dict[str, Any]] | None:
    """(rule, argument names, defaults) of an op in the table, else None."""
    rule = _RULES.get(func.name())  # "aten::relu" (the default overload), "aten::add.Tensor"
    return None if rule is None else (rule, *_signature(func))


def _bind(names: tuple[str, ...], defaults: dict[str, Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Arguments by name (defaults filled in); None when they do not fit the schema."""
    if len(args) > len(names) or not kwargs.keys() <= defaults.keys():
        return None
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    for name in names[len(args) :]:
        if name not in bound:
            if defaults[name] is _MISSING:
                return None
            bound[name] = defaults[name]
    return bound


def bind_arguments(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The arguments of a call of op ``func`` by name, defaults filled in from its schema; None if they do not fit."""
    return _bind(*_signature(func), args, kwargs)


def fast_result(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """The output of ``func`` on meta tensors by a rule of the table, or None (then torch's kernel must run)."""
    entry = _entry(func)
    if entry is None:
        return None
    bound = _bind(entry[1], entry[2], args, kwargs)
    return None if bound is None else entry[0](bound)


#: Ops whose meta kernel is a C++ composite (CompositeExplicitAutograd) that calls only C++ or import-free kernels.
_PLAIN_COMPOSITES = frozenset({"aten::clone", "aten::_to_copy", "aten::copy_", "aten::lift_fresh"})


@functools.cache
def meta_kernel_kind(func: Any) -> str:
    """How torch runs op ``func`` on meta tensors: ``"c++"``, ``"composite"`` or ``"python"``.

    Read from the dispatcher's table: a Meta kernel registered from a ``.py`` file is Python (slow, and its first
    use imports sympy and ``torch._dynamo``); a CompositeImplicitAutograd kernel decomposes into other ops; a
    CompositeExplicitAutograd kernel calls other ops out of sight, so it counts as C++ only for a view (metadata
    only) or one of :data:`_PLAIN_COMPOSITES`; any other registered kernel is C++. An op the table does not show is
    counted as Python.
    """
    name = func.name()
    for line in torch._C._dispatch_dump_table(name).splitlines():
        if line.startswith("Meta:"):
            if "CompositeImplicitAutograd" in line:
                return "composite"
            if "CompositeExplicitAutograd" in line:
                return "c++" if func.is_view or name in _PLAIN_COMPOSITES else "python"
            return "python" if ".py:" in line else "c++"
    return "python"
