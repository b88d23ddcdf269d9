"""The onnxruntime dry-run: execution providers, feeds, measured outputs, loading and running published files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state

from mlm_export.adapters import ExportOptions
from mlm_export.adapters.onnx.boundary import _degrade, _first_line, _ort_errors
from mlm_export.adapters.onnx.graph import _Graph, _load_graph, _mlm_type, _order_of, _probe_axes, _Value
from mlm_export.adapters.onnx.shapes import OnnxProbeBackend, flat_chunks
from mlm_export.dryrun import DryRunLimits, time_limit
from mlm_export.errors import (
    ArtifactLoadError,
    ConfigurationError,
    DryRunLimitError,
    ProbeError,
)
from mlm_export.policy import memory_error, missing_device, out_of_memory
from mlm_export.probing import (
    DEFAULT_SIZES,
    MeasuredTensor,
    ProbeInput,
    ProbeResult,
    probe,
)

#: Size of a dynamic dimension in the dry-run when neither the caller nor the layout defaults give one.
FALLBACK_SIZE = 8


@dataclass(frozen=True)
class _Measured:
    """Result of the onnxruntime dry-run."""

    result: ProbeResult
    base: list[tuple[int, ...]]
    #: Per input, the symbolic axes the caller gave a size for (``input_shape``): where probing starts.
    stated: list[set[int]]
    probed: list[set[int]]
    accelerator: str
    runtime_version: str


def load_artifact(path: str | os.PathLike[str], artifact_type: str, options: ExportOptions) -> Any:
    """Open a published ONNX artifact as an ``onnxruntime.InferenceSession`` (for :mod:`mlm_export.loading`).

    The file is read and checked as by :func:`describe` first; ``options.load.device`` picks the execution provider.

    Raises:
        ArtifactNotFoundError: the file or one of its external-data files does not exist.
        ArtifactLoadError: the file is not a valid ONNX model, or onnxruntime cannot load it.

    .. versionadded:: 0.1
    """
    graph = _load_graph(Path(os.path.abspath(path)))
    providers, _ = _providers(ort, options.load.device, [])
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(graph.path), sess_options=session_options, providers=providers)
    except _ort_errors(onnxruntime_pybind11_state) as exc:
        raise ArtifactLoadError(
            f"onnxruntime {ort.__version__} cannot load '{graph.path}' ({artifact_type}): {_first_line(exc)}",
            hint="Check that the model's operators and opset are supported by this onnxruntime.",
        ) from exc


def run_artifact(
    session: Any, inputs: Sequence[tuple[str, tuple[int, ...], str]], options: ExportOptions
) -> list[MeasuredTensor]:
    """Run ``session`` once on deterministic inputs of the given ``(name, shape, data_type)`` and measure outputs.

    Element types come from the session's own input types, so inputs MLM calls ``other`` (bool...) are built right.

    Raises:
        ProbeError: onnxruntime fails on these inputs.
        DryRunMemoryError: the run failed to allocate memory (policy.out_of_memory).

    .. versionadded:: 0.1
    """
    shapes = {name: tuple(shape) for name, shape, _ in inputs}
    ordered = [tuple(shape) for _, shape, _ in inputs]
    planned = []
    for index, meta in enumerate(session.get_inputs()):
        shape = shapes.get(meta.name, ordered[index] if index < len(ordered) else None)
        if shape is None:
            raise ProbeError(f"No shape was given for ONNX input {meta.name!r}.", hint="Declare every graph input.")
        planned.append((meta.name, tuple(int(s) for s in shape), meta.type.removeprefix("tensor(").removesuffix(")")))
    _check_run_memory(session, {name: shape for name, shape, _ in planned}, options)
    feeds = {}
    for index, (name, shape, element) in enumerate(planned):
        if element == "string":
            feeds[name] = np.full(shape, "", dtype=object)
        else:
            feeds[name] = _random(shape, np.dtype({"float": "float32", "double": "float64"}.get(element, element)),
                                  index)  # fmt: skip
    try:
        with time_limit(DryRunLimits.of(options).timeout, "of the check"):
            return _run_session(session, feeds, [o.name for o in session.get_outputs()])
    except DryRunLimitError:
        raise
    except (*_ort_errors(onnxruntime_pybind11_state), MemoryError) as exc:
        shown = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
        if out_of_memory(exc):  # onnxruntime's arena failure is a Fail/RuntimeException, numpy's a MemoryError
            hint = "Run on a device with more memory, or check the item's input shapes."
            raise memory_error(exc, shown, hint=hint) from exc
        raise ProbeError(f"onnxruntime failed on inputs {shown}: {_first_line(exc)}") from exc


def _check_run_memory(session: Any, shapes: Mapping[str, tuple[int, ...]], options: ExportOptions) -> None:
    """Refuse ``check_item``'s run when its prediction (the graph read again, weights left out) is over the cap.

    Raises:
        DryRunMemoryError: the predicted peak is over ``max_dry_run_memory`` (or the default budget).
    """
    path = getattr(session, "_model_path", None)
    if not path or not os.path.isfile(path):
        return  # a session made from bytes: nothing to read the shapes from
    graph = _load_graph(Path(path))
    values = [v for v in graph.inputs if v.name in shapes]
    backend = OnnxProbeBackend(graph.proto, values, session, _feed, _run_session, graph.memory_size,
                               DryRunLimits.of(options))  # fmt: skip
    del graph
    backend.check_memory([shapes[v.name] for v in values])


def _providers(ort: Any, device: Any, notes: list[str]) -> tuple[list[Any], str]:
    text = str(device if device is not None else "cpu").lower()
    if text.startswith("cuda"):
        index = int(text.split(":", 1)[1]) if ":" in text and text.split(":", 1)[1].isdigit() else 0
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], "cuda"
        raise missing_device(device, f"onnxruntime {ort.__version__} has no CUDAExecutionProvider")
    elif not text.startswith("cpu"):
        raise missing_device(device, "the ONNX dry-run supports only the CPU and CUDA", choices="'cpu', 'cuda:N'")
    return ["CPUExecutionProvider"], "amd64"


def _dry_run_session(graph: _Graph, device: Any, notes: list[str]) -> tuple[Any, str] | None:
    """An onnxruntime session on ``device`` for the dry-run and its accelerator; None (and a note) if it fails."""
    providers, accelerator = _providers(ort, device, notes)
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 4  # failed probes are expected; onnxruntime would log each one
    session_options.enable_cpu_mem_arena = False  # the arena keeps its largest size: memory the cap cannot see
    try:
        session = ort.InferenceSession(str(graph.path), sess_options=session_options, providers=providers)
    except _ort_errors(onnxruntime_pybind11_state) as exc:
        _degrade(
            notes,
            f"The onnxruntime dry-run failed: onnxruntime {ort.__version__} cannot load '{graph.path.name}' "
            f"({_first_line(exc)}); shapes are the ones the graph declares.",
        )
        return None
    if accelerator == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        _degrade(notes, "onnxruntime could not use the CUDA provider; the dry-run ran on the CPU.")
        accelerator = "amd64"
    return session, accelerator


def _dry_run(
    graph: _Graph,
    options: ExportOptions,
    requested: Mapping[str, tuple[int, ...]],
    examples: bool,
    notes: list[str],
) -> _Measured | None:
    """Run the model with onnxruntime and probe its dynamic dims; None (and a note) when it cannot run."""
    dim_orders = options.probe.input_dim_orders
    base, stated = _base_shapes(graph, requested, examples, dim_orders)
    unusable = [v for v in graph.inputs if not v.is_tensor or v.dims is None]
    if unusable:
        names = ", ".join(f"{v.name!r} ({v.type_text})" for v in unusable)
        _degrade(notes, f"The onnxruntime dry-run was skipped: input(s) {names} have no known tensor shape to build.")
        return None
    opened = _dry_run_session(graph, options.load.device, notes)
    if opened is None:
        return None
    session, accelerator = opened
    probe_inputs = [
        ProbeInput(
            name=v.name,
            shape=base[i],
            data_type=v.data_type,
            dim_order=_order_of(i, len(v.dims or ()), dim_orders),
            fixed=tuple(isinstance(d, int) for d in v.dims or ()),
            stated=tuple(a in stated[i] for a in range(len(v.dims or ()))),
        )
        for i, v in enumerate(graph.inputs)
    ]
    probed = [
        _probe_axes(len(v.dims or ()), _order_of(i, len(v.dims or ()), dim_orders))
        - {a for a, d in enumerate(v.dims or ()) if isinstance(d, int)}
        if options.probe.probe_dynamic
        else set()
        for i, v in enumerate(graph.inputs)
    ]

    limits = DryRunLimits.of(options)
    backend = OnnxProbeBackend(graph.proto, graph.inputs, session, _feed, _run_session, graph.memory_size, limits)
    try:
        with backend.timed(f"of '{graph.path.name}'"):
            result = probe(backend, probe_inputs, probe_dynamic=options.probe.probe_dynamic, base_shapes=base)
    except DryRunLimitError:
        raise
    except ProbeError as exc:
        _degrade(
            notes,
            f"The onnxruntime dry-run failed on inputs of shape {', '.join(str(list(s)) for s in base)} "
            f"({_first_line(exc.__cause__ or exc)}); shapes are the ones the graph declares.",
        )
        return None
    notes.extend(result.notes)
    return _Measured(result, base, stated, probed, accelerator, ort.__version__)


def _feed(value: _Value, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A deterministic input array: normal floats, zero integers, False booleans, empty strings."""
    if value.element == "string":
        return np.full(shape, "", dtype=object)
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value.element_type or onnx.TensorProto.FLOAT))
    return _random(shape, dtype, seed)


def _random(shape: Sequence[int], dtype: np.dtype, seed: int) -> np.ndarray:
    """Seeded normal values of ``dtype`` (float32/64 made directly, no float64 copy); zeros for other kinds."""
    if dtype.kind not in "fc":
        return np.zeros(shape, dtype=dtype)
    rng = np.random.default_rng(seed)
    if dtype in (np.float32, np.float64):
        return rng.standard_normal(shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _run_session(session: Any, feeds: Mapping[str, Any], names: Sequence[str]) -> list[MeasuredTensor]:
    """Run once and measure every output. Outputs numpy cannot hold (bfloat16, float8) are read as OrtValues."""
    try:
        values = session.run(None, dict(feeds))
    except RuntimeError as exc:
        if "No corresponding Numpy type" not in str(exc):
            raise
        ort_feeds = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in feeds.items()}
        return [_measure_ort_value(n, v) for n, v in zip(names, session.run_with_ort_values(None, ort_feeds),
                                                         strict=True)]  # fmt: skip
    return [_measure(n, value) for n, value in zip(names, values, strict=True)]


def _measure_ort_value(name: str, value: Any) -> MeasuredTensor:
    """An output kept as an OrtValue: shape and element type without converting to numpy."""
    if not value.is_tensor():
        return MeasuredTensor(name, (1,), "other", kind="other", description="non-tensor value")
    element = value.data_type().removeprefix("tensor(").removesuffix(")")
    try:
        return _measure(name, value.numpy())
    except (RuntimeError, TypeError, ValueError):
        return MeasuredTensor(name, tuple(value.shape()), _mlm_type(element), description=element)


def _measure(name: str, value: Any) -> MeasuredTensor:
    """What onnxruntime returned for one output: a tensor, or a sequence/map (``other``)."""
    if isinstance(value, np.ndarray):
        data_type = _mlm_type(value.dtype.name)
        non_finite = value.dtype.kind in "fc" and not all(np.isfinite(c).all() for c in flat_chunks(value))
        return MeasuredTensor(
            name, tuple(value.shape), data_type, non_finite=non_finite, description=value.dtype.name, values=value
        )
    if isinstance(value, (list, tuple)):
        return MeasuredTensor(name, (len(value),), "other", kind="other", description=f"sequence of {len(value)}")
    if isinstance(value, dict):
        return MeasuredTensor(name, (len(value),), "other", kind="other", description=f"map of {len(value)}")
    shape = tuple(getattr(value, "shape", ()) or (1,))
    return MeasuredTensor(name, shape, "other", kind="other", description=type(value).__name__)


def _base_shapes(
    graph: _Graph,
    requested: Mapping[str, tuple[int, ...]],
    examples: bool,
    dim_orders: Sequence[Sequence[str]] | None = None,
) -> tuple[list[tuple[int, ...]], list[set[int]]]:
    """Concrete dry-run shapes and, per input, the symbolic axes the caller gave a size (``input_shape`` sizes).

    A given size is where probing starts, not a fixed size (``probe_dynamic=False`` keeps it).

    A symbolic dim shared by several inputs gets one size. Dynamic dims take the caller's size, else the layout's
    default (batch 1, height/width 64, time 8), else ``FALLBACK_SIZE``.

    Raises:
        ConfigurationError: a requested shape has the wrong rank or contradicts a fixed dim.
    """
    params = _requested_params(graph, requested)
    shapes: list[tuple[int, ...]] = []
    fixed: list[set[int]] = []
    for index, value in enumerate(graph.inputs):
        dims = value.dims or ()
        order = _order_of(index, len(dims), dim_orders)
        want = requested.get(value.name)
        sizes: list[int] = []
        caller: set[int] = set()
        for axis, dim in enumerate(dims):
            asked = want[axis] if want is not None else -1
            if isinstance(dim, int):
                size = dim
            elif asked >= 0:
                size = asked
                if not examples:
                    caller.add(axis)
            elif isinstance(dim, str) and dim in params:
                size = params[dim]
            else:
                size = DEFAULT_SIZES.get(order[axis], FALLBACK_SIZE)
                if isinstance(dim, str):
                    params[dim] = size
            sizes.append(size)
        shapes.append(tuple(sizes))
        fixed.append(caller)
    return shapes, fixed


def _requested_params(graph: _Graph, requested: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Sizes the caller gave to symbolic dims; a requested shape must fit the graph's rank and fixed dims.

    Raises:
        ConfigurationError: a requested shape has the wrong rank or contradicts a fixed dim.
    """
    params: dict[str, int] = {}
    for value in graph.inputs:
        want = requested.get(value.name)
        if want is None or value.dims is None:
            continue
        declared = [d if d is not None else "?" for d in value.dims]
        if len(want) != len(value.dims):
            raise ConfigurationError(
                f"input_shape {list(want)} for input {value.name!r} has {len(want)} dimensions, but the graph "
                f"declares {len(value.dims)}: {declared}.",
                hint="Give one size per dimension; -1 keeps a dynamic one.",
            )
        for dim, size in zip(value.dims, want, strict=True):
            if isinstance(dim, int) and size not in (-1, dim):
                raise ConfigurationError(
                    f"input_shape {list(want)} for input {value.name!r} contradicts the graph's fixed shape "
                    f"{declared}.",
                    hint="Only dynamic dimensions can be given another size.",
                )
            if isinstance(dim, str) and size >= 0:
                params.setdefault(dim, size)
    return params


def _requested_shapes(options: ExportOptions, names: Sequence[str]) -> tuple[dict[str, tuple[int, ...]], bool]:
    """Shapes by input name from ``example_input`` (probed) or ``input_shape`` (sizes given are fixed)."""
    if options.probe.example_input is not None:
        return _shapes_by_name(options.probe.example_input, names, "example_input", from_arrays=True), True
    if options.probe.input_shape is not None:
        return _shapes_by_name(options.probe.input_shape, names, "input_shape", from_arrays=False), False
    return {}, False


def _shapes_by_name(
    value: Any, names: Sequence[str], argument: str, *, from_arrays: bool
) -> dict[str, tuple[int, ...]]:
    def one(item: Any) -> tuple[int, ...]:
        if from_arrays:
            if not hasattr(item, "shape"):
                raise ConfigurationError(
                    f"{argument} holds a {type(item).__name__}, which has no shape.",
                    hint="Pass arrays (or tensors), a list of them or a dict by input name.",
                )
            return tuple(int(s) for s in item.shape)
        try:
            return tuple(int(s) for s in item)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"{argument}={value!r} is not a shape.", hint="Pass e.g. (1, 3, 224, 224), a list of shapes or a dict."
            ) from exc

    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ConfigurationError(
                f"{argument} names {unknown}, which are not inputs of the graph.", hint=f"Graph inputs: {list(names)}."
            )
        return {str(k): one(v) for k, v in value.items()}
    if from_arrays:
        single = hasattr(value, "shape")
    elif isinstance(value, Sequence):
        single = all(isinstance(s, int) for s in value)
    else:
        raise ConfigurationError(
            f"{argument}={value!r} is not a shape.", hint="Pass e.g. (1, 3, 224, 224), a list of shapes or a dict."
        )
    items = [value] if single else list(value)
    if len(items) > len(names):
        raise ConfigurationError(
            f"{argument} gives {len(items)} shapes but the graph has {len(names)} input(s): {list(names)}.",
            hint="Give one shape per input, in order, or a dict by input name.",
        )
    return {names[i]: one(item) for i, item in enumerate(items)}
