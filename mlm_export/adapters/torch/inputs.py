"""Plan the dry-run inputs of a PyTorch model: example inputs, given shapes, layer hints and inferred inputs."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mlm_export.adapters.torch.sources import _Loaded
from mlm_export.errors import (
    ConfigurationError,
)
from mlm_export.probing import ProbeInput
from mlm_export.tensors import layout_dim_order, mlm_data_type

if TYPE_CHECKING:
    from mlm_export.adapters import ExportOptions


#: Size used for height/width of an image input that nothing else fixes (probing.DEFAULT_SIZES agrees).
DEFAULT_SPATIAL = 64

#: Length of an inferred token (Embedding) or sequence (RNN) input.
DEFAULT_TOKENS = 16

DEFAULT_STEPS = 8

DEFAULT_CONV1D_LENGTH = 32

#: Forward parameter names too generic to be an input's name (a single input is then called "input").
_GENERIC_ARG_NAMES = frozenset({"x", "X", "inp", "input", "inputs", "input_tensor", "tensor", "data", "args"})


def data_type_of(dtype: Any) -> str:
    """MLM data type of a torch dtype (``torch.bfloat16`` and ``torch.bool`` are ``"other"``)."""
    return mlm_data_type(str(dtype))


def _tensors_of(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


@dataclass
class _InputPlan:
    """How to make one model input: name, dtype, integer range, and how it is passed to forward."""

    name: str
    dtype: Any
    keyword: str | None = None
    low: int = 0
    high: int = 2
    example: Any = None
    dim_order: tuple[str, ...] | None = None
    layout: str | None = None


@dataclass
class _Inputs:
    plans: list[_InputPlan]
    probe_inputs: list[ProbeInput]
    base_shapes: list[tuple[int, ...]] | None
    dict_argument: bool = False
    notes: list[str] = field(default_factory=list)
    origin: str | None = None


@dataclass(frozen=True)
class _LayerHint:
    shape: tuple[int, ...]
    dim_order: tuple[str, ...]
    layout: str
    dtype_name: str
    note: str
    high: int = 2


def _forward_parameters(module: Any) -> list[inspect.Parameter]:
    """The forward's parameters (without self); a loaded TorchScript module's come from its schema."""
    forward = getattr(module, "forward", None)
    if forward is None:
        return []
    schema = getattr(forward, "schema", None)
    if schema is not None:
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return [inspect.Parameter(a.name, kind) for a in schema.arguments if a.name != "self"]
    try:
        signature = inspect.signature(forward)
    except (TypeError, ValueError):
        return []
    return [p for p in signature.parameters.values() if p.name != "self"]


def _positional_names(module: Any, count: int) -> list[str]:
    names: list[str] = []
    for param in _forward_parameters(module):
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            break
        names.append(param.name)
    names = names[:count]
    if count == 1:
        if not names or names[0] in _GENERIC_ARG_NAMES:
            return ["input"]
        return names
    names += [f"input_{i}" for i in range(len(names), count)]
    seen: set[str] = set()
    result = []
    for index, name in enumerate(names):
        result.append(name if name not in seen else f"input_{index}")
        seen.add(result[-1])
    return result


def _float_dtype(module: Any) -> Any:
    for tensor in _tensors_of(module) if module is not None else []:
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _parse_dtype(spec: Any, argument: str) -> Any:
    if isinstance(spec, torch.dtype):
        return spec
    if isinstance(spec, str):
        candidate = getattr(torch, spec.removeprefix("torch."), None)
        if isinstance(candidate, torch.dtype):
            return candidate
    raise ConfigurationError(
        f"{argument}={spec!r} is not a torch dtype.", hint="Use e.g. torch.float32, 'float32', 'int64' or 'uint8'."
    )


def _embedding_high(module: Any) -> int:
    if module is None:
        return 2
    for sub in module.modules():
        if _layer_kind(sub) == "Embedding" and (shape := _parameter_shape(sub, "weight")) is not None:
            return int(shape[0])
    return 2


def _fixed_image_size(module: Any) -> tuple[int, int] | None:
    """A spatial size the model insists on (ViT ``img_size``/``image_size``), when it declares one."""
    candidates: list[tuple[str, Any]] = []
    patch_embed = getattr(module, "patch_embed", None)
    if getattr(module, "dynamic_img_size", False) or getattr(patch_embed, "strict_img_size", True) is False:
        return None
    for owner_name, owner in (("", module), ("patch_embed.", patch_embed)):
        if owner is None:
            continue
        for attr in ("img_size", "image_size"):
            if hasattr(owner, attr):
                candidates.append((owner_name + attr, getattr(owner, attr)))
    for _attr, value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, value
        if (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            return int(value[0]), int(value[1])
    return None


_RNN_KINDS = ("LSTM", "GRU", "RNN")


def _layer_kind(layer: Any) -> str | None:
    """Conv1d/Conv2d/Conv3d/Linear/Embedding/LSTM/GRU/RNN, for nn modules and their TorchScript versions."""
    if isinstance(layer, torch.jit.ScriptModule):
        name = getattr(layer, "original_name", "")
        return name if name in ("Conv1d", "Conv2d", "Conv3d", "Linear", "Embedding", *_RNN_KINDS) else None
    nn = torch.nn
    for kind, cls in (("Conv2d", nn.Conv2d), ("Conv1d", nn.Conv1d), ("Conv3d", nn.Conv3d), ("Linear", nn.Linear),
                      ("Embedding", nn.Embedding)):  # fmt: skip
        if isinstance(layer, cls):
            return kind
    if isinstance(layer, nn.RNNBase):
        return type(layer).__name__ if type(layer).__name__ in _RNN_KINDS else "RNN"
    return None


def _parameter_shape(layer: Any, name: str) -> tuple[int, ...] | None:
    """The shape of ``layer``'s own parameter ``name`` (None when it has none).

    Layer sizes are read from parameter shapes, never from module attributes: a ``torch.jit.trace``d submodule keeps
    its parameters but none of its Python attributes (``in_channels``, ``in_features``...).
    """
    for key, value in layer.named_parameters(recurse=False):
        if key == name and value is not None:
            return tuple(int(s) for s in value.shape)
    return None


def _layer_size(kind: str, layer: Any) -> int | None:
    """Input channels/features of a Conv/Linear/RNN layer, or the vocabulary size of an Embedding."""
    if kind in _RNN_KINDS:
        shape = _parameter_shape(layer, "weight_ih_l0")
        return None if shape is None else shape[1]
    shape = _parameter_shape(layer, "weight")
    if shape is None or len(shape) < 2:
        return None
    if kind == "Embedding":
        return shape[0]
    # Conv weights are (out, in / groups, *kernel); a grouped first layer is rare, and a traced one hides `groups`.
    groups = getattr(layer, "groups", 1) if kind.startswith("Conv") else 1
    return shape[1] * (groups if isinstance(groups, int) and groups > 0 else 1)


def _layer_hint(module: Any) -> _LayerHint | None:
    """The input implied by the first Conv/Linear/Embedding/RNN layer in ``module.modules()`` order."""
    if module is None:
        return None
    for layer_name, layer in module.named_modules():
        kind = _layer_kind(layer)
        size_of_layer = None if kind is None else _layer_size(kind, layer)
        if kind is not None and size_of_layer is not None:
            where = f"'{layer_name}'" if layer_name else "the model itself"
            return _hint_from_layer(module, layer, kind, size_of_layer, where)
    return None


#: First layers whose input gets the default sizes beside the layer's own: kind -> (the input shape for the layer's
#: size, its dim order, its layout, the layer argument that gives the size).
_DEFAULT_SIZED: dict[str, tuple[Callable[[int], tuple[int, ...]], tuple[str, ...], str, str]] = {
    "Conv1d": (lambda c: (1, c, DEFAULT_CONV1D_LENGTH), ("batch", "channel", "time"), "sequence", "in_channels"),
    "Conv3d": (
        lambda c: (1, c, DEFAULT_STEPS, DEFAULT_SPATIAL, DEFAULT_SPATIAL),
        ("batch", "channel", "time", "height", "width"), "image-time", "in_channels",
    ),
    "Linear": (lambda f: (1, f), ("batch", "channel"), "tabular", "in_features"),
}  # fmt: skip


def _hint_from_layer(module: Any, layer: Any, kind: str, size_of_layer: int, where: str) -> _LayerHint:
    """The input a first layer of ``kind`` (see :func:`_layer_kind`) of size ``size_of_layer`` implies."""
    if kind == "Conv2d":
        return _image_hint(module, size_of_layer, where)
    if kind in _DEFAULT_SIZED:
        shape_of, order, layout, argument = _DEFAULT_SIZED[kind]
        shape = shape_of(size_of_layer)
        return _LayerHint(
            shape, order, layout, "float",
            f"The input shape {list(shape)} was inferred from the first {kind} layer ({where}, "
            f"{argument}={size_of_layer}).",
        )  # fmt: skip
    if kind == "Embedding":
        n = size_of_layer
        return _LayerHint(
            (1, DEFAULT_TOKENS), ("batch", "token"), "tokens", "int64",
            f"The input shape [1, {DEFAULT_TOKENS}] (int64 token ids below {n}) was inferred from the first "
            f"Embedding layer ({where}, num_embeddings={n}).",
            high=n,
        )  # fmt: skip
    return _recurrent_hint(layer, kind, size_of_layer, where)  # one of _RNN_KINDS


def _image_hint(module: Any, channels: int, where: str) -> _LayerHint:
    """``[1, C, H, W]`` for a first Conv2d: the model's declared image size, else the default spatial size."""
    size = _fixed_image_size(module) or (DEFAULT_SPATIAL, DEFAULT_SPATIAL)
    c = channels
    note = (
        f"The input shape [1, {c}, {size[0]}, {size[1]}] was inferred from the first Conv2d layer "
        f"({where}, in_channels={c})"
    )
    if size != (DEFAULT_SPATIAL, DEFAULT_SPATIAL):
        note += f" and the model's declared image size {size[0]}x{size[1]}"
    return _LayerHint((1, c, *size), ("batch", "channel", "height", "width"), "image", "float", note + ".")


def _recurrent_hint(layer: Any, kind: str, features: int, where: str) -> _LayerHint:
    """A ``DEFAULT_STEPS``-long sequence for a first LSTM/GRU/RNN, time first unless ``batch_first``."""
    f = features
    batch_first = getattr(layer, "batch_first", False) is True
    if batch_first:
        shape, order = (1, DEFAULT_STEPS, f), ("batch", "time", "channel")
    else:
        shape, order = (DEFAULT_STEPS, 1, f), ("time", "batch", "channel")
    return _LayerHint(
        shape, order, "sequence", "float",
        f"The input shape {list(shape)} ({', '.join(order)}) was inferred from the first {kind} layer "
        f"({where}, input_size={f}, batch_first={batch_first}).",
    )  # fmt: skip


def _meta_channels(module: Any) -> tuple[int, str] | None:
    """in_chans from torchgeo weights meta (module.weights / hparams['weights']) or hparams in_channels."""
    if module is None:
        return None
    hparams = getattr(module, "hparams", None)
    hparams = hparams if isinstance(hparams, Mapping) else {}
    for owner, label in ((getattr(module, "weights", None), "weights"), (hparams.get("weights"), "hparams['weights']")):
        meta = getattr(owner, "meta", None)
        if isinstance(meta, Mapping) and isinstance(meta.get("in_chans"), int):
            return int(meta["in_chans"]), f"the {label} meta['in_chans']"
    for key in ("in_channels", "in_chans"):
        value = hparams.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, f"hparams[{key!r}]"
    return None


def _example_plans(module: Any, example: Any, origin: str) -> _Inputs:
    """Input plans from example tensors: a tensor, a tuple/list, a dict, or (args, kwargs) of an ExportedProgram."""
    pairs: list[tuple[str, Any, str | None]] = []  # name, tensor, keyword
    dict_argument = False
    if isinstance(example, torch.Tensor):
        pairs = [(_positional_names(module, 1)[0], example, None)]
    elif (
        isinstance(example, tuple)
        and len(example) == 2
        and isinstance(example[0], tuple)
        and isinstance(example[1], Mapping)
    ):
        args, kwargs = example
        names = _positional_names(module, len(args))
        pairs = [(n, t, None) for n, t in zip(names, args, strict=True)]
        pairs += [(str(k), v, str(k)) for k, v in kwargs.items()]
    elif isinstance(example, (tuple, list)):
        names = _positional_names(module, len(example))
        pairs = [(n, t, None) for n, t in zip(names, example, strict=True)]
    elif isinstance(example, Mapping):
        params = _forward_parameters(module)
        accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        keywords = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not accepts_kwargs and not set(map(str, example)) <= keywords and len(positional) >= 1:
            dict_argument = True
        pairs = [(str(k), v, None if dict_argument else str(k)) for k, v in example.items()]
    else:
        raise ConfigurationError(
            f"example_input is a {type(example).__name__}; expected a tensor, a tuple/list or a dict of tensors.",
            hint="Pass e.g. torch.randn(1, 3, 64, 64), (image, mask) or {'image': image}.",
        )
    if not pairs:
        raise ConfigurationError("example_input is empty.", hint="Pass at least one tensor.")
    for name, tensor, _ in pairs:
        if not isinstance(tensor, torch.Tensor):
            raise ConfigurationError(
                f"example_input {name!r} is a {type(tensor).__name__}, not a tensor.",
                hint="Every entry of example_input must be a torch.Tensor.",
            )
    plans = []
    for name, tensor, keyword in pairs:
        plan = _InputPlan(name=name, dtype=tensor.dtype, keyword=keyword, example=tensor)
        integer = not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype != torch.bool
        if integer and tensor.numel():
            plan.low, plan.high = int(tensor.min()), int(tensor.max()) + 1
        plans.append(plan)
    _apply_layer_hint(module, plans)
    shapes = [tuple(int(s) for s in p.example.shape) for p in plans]
    probe_inputs = [
        ProbeInput(p.name, shape, data_type_of(p.dtype), layout=p.layout, dim_order=p.dim_order)
        for p, shape in zip(plans, shapes, strict=True)
    ]
    return _Inputs(plans, probe_inputs, shapes, dict_argument=dict_argument, origin=origin)


def _apply_layer_hint(module: Any, plans: list[_InputPlan]) -> None:
    """Name the first input's axes after its first layer when the ranks agree (Conv1d: batch, channel, time...)."""
    hint = _layer_hint(module)
    if hint is None or not plans:
        return
    rank = len(plans[0].example.shape) if plans[0].example is not None else None
    if rank == len(hint.shape) and hint.dim_order != layout_dim_order(rank):
        plans[0].dim_order, plans[0].layout = hint.dim_order, hint.layout


def _shape_plans(module: Any, options: ExportOptions) -> _Inputs:
    """Input plans from ``input_shape`` (+ ``input_dtype``): one shape, a list of shapes, or a dict name -> shape."""
    spec = options.probe.input_shape
    named: list[tuple[str | None, Any]]
    if isinstance(spec, Mapping):
        named = [(str(k), v) for k, v in spec.items()]
    elif isinstance(spec, (list, tuple)) and spec and all(isinstance(s, (list, tuple)) for s in spec):
        named = [(None, s) for s in spec]
    elif isinstance(spec, (list, tuple)) or _is_size(spec):
        named = [(None, spec)]
    else:
        raise ConfigurationError(
            f"input_shape={spec!r} is not a shape.",
            hint="Use e.g. [1, 3, 64, 64], [-1, 3, -1, -1] or a list of shapes.",
        )
    shapes: list[tuple[int, ...]] = []
    for _name, shape in named:
        try:
            values = tuple(-1 if s is None else int(s) for s in shape)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"input_shape={spec!r}: {list(shape)!r} is not a list of integers.", hint="Use -1 for a dynamic size."
            ) from exc
        if not values or any(v < -1 or v == 0 for v in values):
            raise ConfigurationError(
                f"input_shape={spec!r}: {list(values)} must hold sizes >= 1, or -1 for a dynamic dimension.",
                hint="Use e.g. [-1, 3, 64, 64].",
            )
        shapes.append(values)
    dtypes = _input_dtypes(options.probe.input_dtype, [n for n, _ in named], len(shapes), _float_dtype(module))
    names = [n for n, _ in named]
    return _plans_from_shapes(module, names, shapes, dtypes, origin="input_shape")


def _plans_from_shapes(
    module: Any, keywords: Sequence[str | None], shapes: Sequence[tuple[int, ...]], dtypes: Sequence[Any], origin: str
) -> _Inputs:
    """Plans for inputs given by shape (-1 = dynamic, probed at the default size) and dtype."""
    positional = _positional_names(module, len(shapes))
    plans = []
    for index, (keyword, dtype) in enumerate(zip(keywords, dtypes, strict=True)):
        plan = _InputPlan(name=keyword or positional[index], dtype=dtype, keyword=keyword)
        if not dtype.is_floating_point and not dtype.is_complex:
            plan.high = _embedding_high(module)
        plans.append(plan)
    hint = _layer_hint(module)
    if hint is not None and len(shapes[0]) == len(hint.shape) and hint.dim_order != layout_dim_order(len(shapes[0])):
        plans[0].dim_order, plans[0].layout = hint.dim_order, hint.layout
    probe_inputs = [
        ProbeInput(p.name, s, data_type_of(p.dtype), layout=p.layout, dim_order=p.dim_order)
        for p, s in zip(plans, shapes, strict=True)
    ]
    return _Inputs(plans, probe_inputs, None, origin=origin)


def _program_inputs(program: Any) -> tuple[list[tuple[int, ...]], list[Any]]:
    """Shapes (-1 for symbolic sizes) and dtypes of an ExportedProgram's user inputs, from its placeholders."""
    user_inputs = set(program.graph_signature.user_inputs)
    shapes, dtypes = [], []
    for node in program.graph.nodes:
        value = node.meta.get("val")
        if node.op != "placeholder" or node.name not in user_inputs or not isinstance(value, torch.Tensor):
            continue
        shapes.append(tuple(int(d) if isinstance(d, int) else -1 for d in value.shape))
        dtypes.append(value.dtype)
    return shapes, dtypes


def _is_size(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Size)


def _input_dtypes(spec: Any, names: Sequence[str | None], count: int, default: Any) -> list[Any]:
    if spec is None:
        return [default] * count
    if isinstance(spec, Mapping):
        return [_parse_dtype(spec[n], "input_dtype") if n in spec else default for n in names]
    if isinstance(spec, (list, tuple)):
        if len(spec) != count:
            raise ConfigurationError(
                f"input_dtype has {len(spec)} entries for {count} input shape(s).", hint="Give one dtype per input."
            )
        return [_parse_dtype(s, "input_dtype") for s in spec]
    return [_parse_dtype(spec, "input_dtype")] * count


def _inferred_plans(loaded: _Loaded, module: Any) -> _Inputs:
    if loaded.example_input is not None:
        return _example_plans(module, loaded.example_input, loaded.example_origin or "the model's example inputs")
    if loaded.kind == "exported":
        shapes, dtypes = _program_inputs(loaded.program)
        if shapes:
            plans = _plans_from_shapes(module, [None] * len(shapes), shapes, dtypes, origin="placeholders")
            plans.notes.append("The input shapes were read from the ExportedProgram's input placeholders.")
            return plans
    example_array = getattr(module, "example_input_array", None) if module is not None else None
    if example_array is not None:
        plans = _example_plans(module, example_array, "example_input_array")
        plans.notes.append("The input shape was taken from the LightningModule's example_input_array.")
        return plans
    meta = _meta_channels(module)
    hint = _layer_hint(module)
    if meta is not None:
        channels, origin = meta
        size = _fixed_image_size(module) or (DEFAULT_SPATIAL, DEFAULT_SPATIAL)
        shape = (1, channels, *size)
        order = ("batch", "channel", "height", "width")
        note = f"The input shape {list(shape)} was inferred from {origin} (in_chans={channels})."
        hint = _LayerHint(shape, order, "image", "float", note)
    if hint is None:
        raise ConfigurationError(
            f"Cannot infer the input of {loaded.name}: it has no example_input_array and no Conv, Linear, "
            "Embedding or RNN layer to read a size from.",
            hint="Pass input_shape= (e.g. [1, 3, 64, 64]) or example_input=.",
        )
    dtype = torch.int64 if hint.dtype_name == "int64" else _float_dtype(module)
    name = _positional_names(module, 1)[0]
    plan = _InputPlan(name=name, dtype=dtype, high=hint.high, dim_order=hint.dim_order, layout=hint.layout)
    probe_input = ProbeInput(
        name, hint.shape, data_type_of(dtype), layout=hint.layout, dim_order=hint.dim_order,
        fixed=(False,) * len(hint.shape),
    )  # fmt: skip
    return _Inputs([plan], [probe_input], [hint.shape], notes=[hint.note], origin="inferred")


def _plan_inputs(loaded: _Loaded, module: Any, options: ExportOptions) -> _Inputs:
    if options.probe.example_input is not None:
        return _example_plans(module, options.probe.example_input, "example_input")
    if options.probe.input_shape is not None:
        return _shape_plans(module, options)
    inputs = _inferred_plans(loaded, module)
    if options.probe.input_dtype is not None:
        names = [p.keyword or p.name for p in inputs.plans]
        dtypes = _input_dtypes(options.probe.input_dtype, names, len(inputs.plans), _float_dtype(module))
        for plan, dtype in zip(inputs.plans, dtypes, strict=True):
            plan.dtype, plan.example = dtype, None
            if not dtype.is_floating_point and not dtype.is_complex:
                plan.low, plan.high = 0, _embedding_high(module)
        inputs.probe_inputs = [
            dataclasses.replace(probe_input, data_type=data_type_of(dtype))
            for probe_input, dtype in zip(inputs.probe_inputs, dtypes, strict=True)
        ]
    return inputs


def _base_shapes(inputs: _Inputs) -> list[tuple[int, ...]]:
    """The shapes of the first dry-run: the example's, or the given ones with probing's defaults for -1."""
    if inputs.base_shapes is not None:
        return [tuple(s) for s in inputs.base_shapes]
    from mlm_export.probing import DEFAULT_SIZES

    shapes = []
    for probe_input in inputs.probe_inputs:
        order = probe_input.resolved_dim_order()
        shapes.append(
            tuple(s if s >= 0 else DEFAULT_SIZES.get(n, 1) for s, n in zip(probe_input.shape, order, strict=True))
        )
    return shapes


def _call_structure(inputs: _Inputs, tensors: Sequence[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) for calling, tracing or exporting the module with ``tensors``."""
    plans = inputs.plans
    if inputs.dict_argument:
        return ({p.name: t for p, t in zip(plans, tensors, strict=True)},), {}
    args = tuple(t for p, t in zip(plans, tensors, strict=True) if p.keyword is None)
    kwargs = {p.keyword: t for p, t in zip(plans, tensors, strict=True) if p.keyword is not None}
    return args, kwargs
