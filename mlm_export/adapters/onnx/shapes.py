"""ONNX probing backend: output shapes from ONNX shape inference at concrete input shapes, values from onnxruntime.

A probe asks :func:`onnx.shape_inference.infer_shapes` (strict, with data propagation) for the outputs of the graph
whose inputs are set to the probe's concrete shapes: no onnxruntime session runs. When inference leaves an output
dimension unknown or fails, the probe runs in onnxruntime instead. The inferred shapes of every intermediate value
also give the dry-run's predicted peak memory (weights + the largest set of values alive at once, in node order,
plus the column buffer of a ``Conv`` while it runs), checked against the budget before each real run together with
the second input set of an extra-slices run and the outputs of earlier runs still alive. A graph whose shapes
inference leaves unknown is guessed from its input bytes (:data:`~mlm_export.dryrun.UNPREDICTED_INPUT_FACTOR`).
The dry-run session runs without onnxruntime's memory arena (which keeps its largest size after a run).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlm_export.dryrun import (
    DryRunLimits,
    RunPrediction,
    available_memory,
    check_memory,
    live_bytes,
    memory_budget,
    time_limit,
)
from mlm_export.probing import MeasuredTensor, ShapeInferenceUnavailable

if TYPE_CHECKING:
    import numpy as np
    import onnx


def shape_only_proto(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` for shape inference: tensors in external files keep their dims but lose their location."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for tensor in copy.graph.initializer:
        if uses_external_data(tensor):
            tensor.ClearField("external_data")
            tensor.ClearField("data_location")
    return copy


def _set_input_shapes(proto: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for value in model.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[value.name]:
                dims.add().dim_value = int(size)
    for value in model.graph.output:  # declared output dims must not constrain what inference finds
        value.type.tensor_type.ClearField("shape")
    return model


def _known_shape(info: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    tensor_type = info.type.tensor_type
    if info.type.WhichOneof("value") != "tensor_type" or not tensor_type.HasField("shape"):
        return None
    dims = tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def _element_bytes(element_type: int) -> int:
    import onnx

    try:
        return max(1, onnx.helper.tensor_dtype_to_np_dtype(element_type).itemsize)
    except KeyError:  # an element type onnx has no numpy dtype for (its lookup table raises KeyError)
        return 4


def _conv_columns(node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]], sizes: Mapping[str, int]) -> int:
    """Bytes of the column buffer (im2col) of one image that onnxruntime's CPU ``Conv`` may allocate, else 0.

    ``C_in / group x prod(kernel) x prod(output spatial)`` elements; an upper bound of what MLAS uses (measured with
    onnxruntime 1.23: 2x the output of a 3->8 channel 3x3 convolution on 3000x3000 pixels, the buffer 3.4x).
    """
    if node.op_type != "Conv" or len(node.input) < 2 or len(node.output) < 1:
        return 0
    data, weight, out = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
    if data is None or weight is None or out is None or len(out) < 3 or not data[0]:
        return 0
    element = sizes.get(node.output[0], 0) // max(1, math.prod(out))
    return weight[1] * math.prod(weight[2:]) * math.prod(out[2:]) * element


def peak_value_bytes(model: onnx.ModelProto) -> int | None:
    """Peak bytes of graph inputs and intermediate values alive at once, in node order; None when a size is unknown.

    Each ``Conv`` also counts its column buffer while it runs (:func:`_conv_columns`).
    """
    infos = {v.name: v for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    initializers = {t.name for t in model.graph.initializer}
    last_use: dict[str, int] = {}
    for index, node in enumerate(model.graph.node):
        for name in node.input:
            last_use[name] = index
    for value in model.graph.output:
        last_use[value.name] = len(model.graph.node)
    sizes: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    for name, info in infos.items():
        shape = _known_shape(info)
        if shape is None and name not in initializers:
            return None
        if shape is not None:
            sizes[name] = math.prod(shape) * _element_bytes(info.type.tensor_type.elem_type)
            shapes.setdefault(name, shape)
    live = sum(sizes.get(v.name, 0) for v in model.graph.input if v.name not in initializers)
    peak = live
    for index, node in enumerate(model.graph.node):
        live += sum(sizes.get(name, 0) for name in node.output if name)
        peak = max(peak, live + _conv_columns(node, shapes, sizes))
        live -= sum(sizes.get(name, 0) for name in {*node.input, *node.output}
                    if name and name not in initializers and last_use.get(name, -1) <= index)  # fmt: skip
    return peak


class OnnxProbeBackend:
    """:class:`~mlm_export.probing.ProbeBackend` of an ONNX graph and its onnxruntime session.

    Args:
        proto: the graph (external data not loaded).
        inputs: the graph inputs (``_Value``: name, element type).
        session: the onnxruntime session.
        feed: makes a seeded input array ``feed(value, shape, seed)``.
        run_session: runs the session on feeds and measures the outputs.
        weights: bytes of the initializers.
        limits: the dry-run's caps.
    """

    def __init__(
        self, proto: onnx.ModelProto, inputs: Sequence[Any], session: Any, feed: Callable[..., np.ndarray],
        run_session: Callable[..., list[MeasuredTensor]], weights: int, limits: DryRunLimits,
    ) -> None:  # fmt: skip
        self.proto = shape_only_proto(proto)
        self.inputs = list(inputs)
        self.session = session
        self.feed = feed
        self.run_session = run_session
        self.weights = weights
        self.limits = limits
        self.output_names = [o.name for o in session.get_outputs()]
        self.activations: dict[tuple[tuple[int, ...], ...], int | None] = {}
        #: Weak references to the output arrays of the real runs (alive while the caller keeps them).
        self._outputs: list[Any] = []

    def _inferred(self, shapes: Sequence[tuple[int, ...]]) -> onnx.ModelProto:
        import onnx

        model = _set_input_shapes(self.proto, {v.name: s for v, s in zip(self.inputs, shapes, strict=True)})
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
            raise ShapeInferenceUnavailable(f"ONNX shape inference failed: {exc}") from exc
        self.activations[_key(shapes)] = peak_value_bytes(inferred)
        return inferred

    def infer(self, shapes: Sequence[tuple[int, ...]]) -> list[MeasuredTensor]:
        """Outputs by ONNX shape inference; ShapeInferenceUnavailable when a dimension stays unknown."""
        from mlm_export.adapters.onnx.graph import _element_name, _mlm_type

        inferred = self._inferred(shapes)
        outputs = {o.name: o for o in inferred.graph.output}
        measured = []
        for name in self.output_names:
            info = outputs.get(name)
            shape = _known_shape(info) if info is not None else None
            if shape is None:
                raise ShapeInferenceUnavailable(f"ONNX shape inference left output {name!r} without a full shape.")
            element = _element_name(info.type.tensor_type.elem_type)
            measured.append(MeasuredTensor(name, shape or (1,), _mlm_type(element), scalar=not shape))
        return measured

    def prediction(self, shapes: Sequence[tuple[int, ...]], *, keep: bool = False) -> RunPrediction:
        """What a real run at ``shapes`` holds at its peak (see the module docstring)."""
        key = _key(shapes)
        if key not in self.activations:
            try:
                self._inferred(shapes)
            except ShapeInferenceUnavailable:
                self.activations[key] = None
        inputs = sum(math.prod(s) * _element_bytes(v.element_type or 1) for v, s in zip(self.inputs, shapes,
                                                                                        strict=True))  # fmt: skip
        held = live_bytes(self._outputs)
        return RunPrediction(self.weights, self.activations.get(key), inputs if keep else 0, held, inputs)

    def check_memory(self, shapes: Sequence[tuple[int, ...]], *, keep: bool = False) -> None:
        """Refuse a real run whose predicted peak is over the budget (DryRunMemoryError)."""
        budget = memory_budget(self.limits, self.weights, available_memory())
        shown = ", ".join(str(list(s)) for s in shapes)
        check_memory(self.prediction(shapes, keep=keep), budget, f"at input shapes {shown}",
                     given=self.limits.max_memory is not None)  # fmt: skip

    def run(
        self, shapes: Sequence[tuple[int, ...]], keep: Sequence[tuple[int, ...]] | None = None
    ) -> list[MeasuredTensor]:
        """An onnxruntime run on seeded inputs; with ``keep``, other values beyond the leading ``keep`` slices."""
        import numpy as np

        self.check_memory(shapes, keep=keep is not None)
        feeds = {}
        for seed, (value, shape) in enumerate(zip(self.inputs, shapes, strict=True)):
            array = self.feed(value, shape, seed)
            if keep is not None:
                other = self.feed(value, shape, seed + 1000)
                if other.dtype.kind not in "fc" and other.dtype != object:
                    other = np.ones_like(array)
                region = tuple(slice(0, int(k)) for k in keep[seed])
                other[region] = array[region]
                array = other
            feeds[value.name] = array
        measured = self.run_session(self.session, feeds, self.output_names)
        self._outputs = [ref for ref in self._outputs if ref() is not None]
        self._outputs.extend(weakref.ref(m.values) for m in measured if isinstance(m.values, np.ndarray))
        return measured

    def same_values(self, first: MeasuredTensor, second: MeasuredTensor) -> bool:
        """Equal shapes and values up to a few units of the dtype's rounding (NaN equals NaN)."""
        import numpy as np

        a, b = first.values, second.values
        if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray) or a.shape != b.shape:
            return False
        if a.dtype.kind not in "fc":
            return bool(np.array_equal(a, b))
        scale = 0.0  # chunk by chunk: a few MiB of temporaries whatever the outputs' size
        for chunk in flat_chunks(a):
            scale = max(scale, float(np.nan_to_num(np.abs(chunk), nan=0, posinf=0, neginf=0).max()))
        tolerance = 16 * float(np.finfo(a.dtype).eps) * (1 + scale)
        return all(np.allclose(x, y, rtol=0, atol=tolerance, equal_nan=True)
                   for x, y in zip(flat_chunks(a), flat_chunks(b), strict=True))  # fmt: skip

    def timed(self, what: str) -> Any:
        """The dry-run's wall-clock limit, as a context manager."""
        return time_limit(self.limits.timeout, what)


#: Elements compared or checked at a time (see :meth:`OnnxProbeBackend.same_values`).
CHUNK_ELEMENTS = 2**20


def flat_chunks(array: np.ndarray) -> Iterator[np.ndarray]:
    """Slices of ``array`` flattened (a view when contiguous), ``CHUNK_ELEMENTS`` at a time."""
    flat = array.reshape(-1)
    for start in range(0, flat.size, CHUNK_ELEMENTS):
        yield flat[start : start + CHUNK_ELEMENTS]


def _key(shapes: Sequence[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(s) for s in shape) for shape in shapes)
