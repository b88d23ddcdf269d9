"""ONNX probing backend: output shapes from ONNX shape inference at concrete input shapes, values from onnxruntime.

A probe asks :func:`onnx.shape_inference.infer_shapes` (strict, with data propagation) for the outputs of the graph
whose inputs are set to the probe's concrete shapes: no onnxruntime session runs. When inference leaves an output
dimension unknown or fails, the probe runs in onnxruntime instead. The inferred shapes of every intermediate value
also give the dry-run's predicted peak memory (weights + the largest set of values alive at once, in node order),
checked against the budget before each real run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlm_export.dryrun import DryRunLimits, available_memory, check_memory, memory_budget, time_limit
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


def peak_value_bytes(model: onnx.ModelProto) -> int | None:
    """Peak bytes of graph inputs and intermediate values alive at once, in node order; None when a size is unknown."""
    infos = {v.name: v for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    initializers = {t.name for t in model.graph.initializer}
    last_use: dict[str, int] = {}
    for index, node in enumerate(model.graph.node):
        for name in node.input:
            last_use[name] = index
    for value in model.graph.output:
        last_use[value.name] = len(model.graph.node)
    sizes: dict[str, int] = {}
    for name, info in infos.items():
        shape = _known_shape(info)
        if shape is None and name not in initializers:
            return None
        if shape is not None:
            sizes[name] = math.prod(shape) * _element_bytes(info.type.tensor_type.elem_type)
    live = sum(sizes.get(v.name, 0) for v in model.graph.input if v.name not in initializers)
    peak = live
    for index, node in enumerate(model.graph.node):
        live += sum(sizes.get(name, 0) for name in node.output if name)
        peak = max(peak, live)
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

    def check_memory(self, shapes: Sequence[tuple[int, ...]]) -> None:
        """Refuse a real run whose predicted peak is over the budget (DryRunMemoryError)."""
        key = _key(shapes)
        if key not in self.activations:
            try:
                self._inferred(shapes)
            except ShapeInferenceUnavailable:
                self.activations[key] = None
        activations = self.activations.get(key)
        predicted = None if activations is None else self.weights + activations
        budget = memory_budget(self.limits, self.weights, available_memory())
        shown = ", ".join(str(list(s)) for s in shapes)
        check_memory(predicted, self.weights, budget, f"at input shapes {shown}",
                     given=self.limits.max_memory is not None)  # fmt: skip

    def run(
        self, shapes: Sequence[tuple[int, ...]], keep: Sequence[tuple[int, ...]] | None = None
    ) -> list[MeasuredTensor]:
        """An onnxruntime run on seeded inputs; with ``keep``, other values beyond the leading ``keep`` slices."""
        import numpy as np

        self.check_memory(shapes)
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
        return self.run_session(self.session, feeds, self.output_names)

    def same_values(self, first: MeasuredTensor, second: MeasuredTensor) -> bool:
        """Equal shapes and values up to a few units of the dtype's rounding (NaN equals NaN)."""
        import numpy as np

        a, b = first.values, second.values
        if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray) or a.shape != b.shape:
            return False
        if a.dtype.kind not in "fc":
            return bool(np.array_equal(a, b))
        scale = float(np.nan_to_num(np.abs(a), nan=0, posinf=0, neginf=0).max()) if a.size else 0.0
        tolerance = 16 * float(np.finfo(a.dtype).eps) * (1 + scale)
        return bool(np.allclose(a, b, rtol=0, atol=tolerance, equal_nan=True))

    def timed(self, what: str) -> Any:
        """The dry-run's wall-clock limit, as a context manager."""
        return time_limit(self.limits.timeout, what)


def _key(shapes: Sequence[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(s) for s in shape) for shape in shapes)
