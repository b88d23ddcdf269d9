"""Static read of an ``.onnx`` file: graph inputs/outputs, external data, initializer counts, hyperparameters."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from mlm_export.adapters.onnx.boundary import _degrade, _undecodable_field
from mlm_export.adapters.onnx.embedded import METADATA_KEY, _read_embedded
from mlm_export.adapters.onnx.files import _copy_proto
from mlm_export.errors import (
    ArtifactLoadError,
    ArtifactNotFoundError,
    UnsupportedSourceError,
)
from mlm_export.probing import (
    PROBE_GROUPS,
)
from mlm_export.tensors import default_dim_order, mlm_data_type

_ELEMENT_NAMES = {"FLOAT": "float32", "DOUBLE": "float64", "STRING": "string", "UNDEFINED": "undefined"}


_ELEMENT_BITS = {
    "float32": 32, "float64": 64, "float16": 16, "bfloat16": 16, "bool": 8, "complex64": 64, "complex128": 128,
    "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64,
    "int4": 4, "uint4": 4, "float4e2m1": 4, "int2": 2, "uint2": 2,
}  # fmt: skip

Dim = int | str | None


@dataclass(frozen=True)
class _Value:
    """A graph input or output: ``dims`` holds ints (fixed), strings (symbolic) or None (unknown)."""

    name: str
    type_text: str
    element: str | None
    dims: tuple[Dim, ...] | None
    element_type: int | None = None

    @property
    def is_tensor(self) -> bool:
        return self.element is not None

    @property
    def data_type(self) -> str:
        return _mlm_type(self.element) if self.element is not None else "other"


@dataclass(frozen=True)
class _ExternalFile:
    location: str
    path: Path
    tensors: int


@dataclass
class _Graph:
    """What the static read of one ``.onnx`` file found."""

    path: Path
    proto: onnx.ModelProto
    inputs: list[_Value]
    outputs: list[_Value]
    externals: list[_ExternalFile]
    parameters: int
    memory_size: int
    hyperparameters: dict[str, Any]
    doc: str | None
    graph_name: str
    embedded: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def _read_proto(path: Path) -> onnx.ModelProto:
    """The model proto of ``path``, external data left unread.

    Raises:
        ArtifactNotFoundError: ``path`` is missing.
        ArtifactLoadError: not a regular file, not an ONNX model, or truncated.
    """
    if not path.exists():
        raise ArtifactNotFoundError(f"ONNX file '{path}' does not exist.", hint="Check the path.")
    if not path.is_file():
        raise ArtifactLoadError(f"'{path}' is not a regular file.", hint="Pass the path of a .onnx file.")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except DecodeError as exc:
        raise ArtifactLoadError(
            f"Cannot read '{path}' as an ONNX model: {exc}.",
            hint="The file is truncated or is not an ONNX model; export or download it again.",
        ) from exc
    except OSError as exc:
        raise ArtifactLoadError(f"Cannot read '{path}': {exc.strerror or exc}.", hint="Check permissions.") from exc
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ArtifactLoadError(
            f"'{path}' holds no ONNX model (no graph or no IR version): it is empty or not an ONNX file.",
            hint="Pass a model saved with onnx.save or torch.onnx.export.",
        )
    field = _undecodable_field(proto)
    if field is not None:
        raise ArtifactLoadError(
            f"Cannot read '{path}' as an ONNX model: its text field {field} is not UTF-8.",
            hint="The file is corrupt; export or download it again.",
        )
    return proto


def _load_graph(path: Path) -> _Graph:
    """Read, check and summarise ``path`` without loading external data.

    Raises:
        ArtifactNotFoundError: ``path`` or an external-data file is missing.
        ArtifactLoadError: not an ONNX model, truncated, or rejected by the ONNX checker.
    """
    proto = _read_proto(path)
    externals = _external_files(proto, path)
    try:
        onnx.checker.check_model(_without_external_data(proto) if externals else proto)
    except (onnx.checker.ValidationError, UnicodeDecodeError) as exc:  # a name that is not UTF-8: UnicodeDecodeError
        raise ArtifactLoadError(
            f"'{path}' fails the ONNX checker: {exc}",
            hint="Fix the graph (onnx.checker.check_model shows the same message) or export it again.",
        ) from exc

    notes: list[str] = []
    initializer_names = {t.name for t in proto.graph.initializer}
    inputs = [_value(v) for v in proto.graph.input if v.name not in initializer_names]
    if not inputs:
        raise UnsupportedSourceError(
            f"'{path}' has no graph input that is not an initializer; MLM needs at least one input.",
            hint="Describe a model that takes an input.",
        )
    outputs = [_value(v) for v in proto.graph.output]
    if not outputs:
        raise UnsupportedSourceError(f"'{path}' has no graph output; MLM needs at least one output.")
    if any(_incomplete(v) for v in outputs):
        inferred = _infer_shapes(proto, path, notes)
        if inferred is not None:
            outputs = [_value(v) for v in inferred.graph.output]
    parameters, memory_size = _count_initializers(proto)
    embedded = _read_embedded(proto, f"'{path}'")
    hyperparameters = _hyperparameters(proto)
    doc = proto.doc_string.strip() or proto.graph.doc_string.strip() or None
    return _Graph(
        path=path,
        proto=proto,
        inputs=inputs,
        outputs=outputs,
        externals=externals,
        parameters=parameters,
        memory_size=memory_size,
        hyperparameters=hyperparameters,
        doc=doc,
        graph_name=proto.graph.name,
        embedded=embedded,
        notes=notes,
    )


def _without_external_data(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy for ``onnx.checker``: external tensors become empty, since :func:`_external_files` checked them.

    Checking the file by path would also make the checker refuse external data that is a symbolic link (the
    Hugging Face cache layout) or has several hard links, which onnxruntime loads without complaint.
    """
    copy = _copy_proto(proto)
    for tensor in _all_tensors(copy):
        if uses_external_data(tensor):
            tensor.ClearField("external_data")
            tensor.ClearField("data_location")
            tensor.ClearField("dims")
            tensor.dims.append(0)
    return copy


def _infer_shapes(proto: onnx.ModelProto, path: Path, notes: list[str]) -> onnx.ModelProto | None:
    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        _degrade(notes, f"ONNX shape inference failed on '{path.name}' ({exc}); output shapes are the declared ones.")
        return None


def _incomplete(value: _Value) -> bool:
    return value.is_tensor and (value.dims is None or any(d is None for d in value.dims))


def _value(info: onnx.ValueInfoProto) -> _Value:
    kind = info.type.WhichOneof("value")
    if kind == "tensor_type":
        tensor_type = info.type.tensor_type
        element = _element_name(tensor_type.elem_type)
        dims: tuple[Dim, ...] | None = None
        if tensor_type.HasField("shape"):
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
                for d in tensor_type.shape.dim
            )
        return _Value(info.name, _type_text(info.type), element, dims, tensor_type.elem_type)
    return _Value(info.name, _type_text(info.type), None, None)


def _type_text(type_proto: onnx.TypeProto) -> str:
    """ONNX type as onnxruntime writes it: ``tensor(float32)``, ``seq(map(int64,tensor(float32)))``."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({_element_name(type_proto.tensor_type.elem_type)})"
    if kind == "sparse_tensor_type":
        return f"sparse_tensor({_element_name(type_proto.sparse_tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({_type_text(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        return f"map({_element_name(type_proto.map_type.key_type)},{_type_text(type_proto.map_type.value_type)})"
    if kind == "optional_type":
        return f"optional({_type_text(type_proto.optional_type.elem_type)})"
    return "unknown"


def _element_name(element_type: int) -> str:
    """``float32``, ``int64``, ``bool``, ``bfloat16``... for an ONNX ``TensorProto.DataType``."""
    try:
        name = onnx.TensorProto.DataType.Name(element_type)
    except ValueError:
        return f"type-{element_type}"
    return _ELEMENT_NAMES.get(name, name.lower())


def _mlm_type(element: str) -> str:
    """MLM data type of an element name; ``other`` for types MLM lacks (bool, bfloat16, string...)."""
    return mlm_data_type(element)


def _element_bits(element_type: int) -> int:
    name = _element_name(element_type)
    if name in _ELEMENT_BITS:
        return _ELEMENT_BITS[name]
    if name.startswith("float8"):
        return 8
    try:
        return int(onnx.helper.tensor_dtype_to_np_dtype(element_type).itemsize) * 8
    except KeyError:  # an element type onnx has no numpy dtype for (its lookup table raises KeyError)
        return 8


def _all_tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for tensor, _ in _graph_tensors(proto.graph):
        yield tensor
    for function in proto.functions:
        for node in function.node:
            yield from (t for t, _ in _node_tensors(node))


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[tuple[onnx.TensorProto, bool]]:
    """Every tensor of a graph and its subgraphs, with whether it is an initializer (a parameter)."""
    for tensor in graph.initializer:
        yield tensor, True
    for sparse in graph.sparse_initializer:
        yield sparse.values, True
        yield sparse.indices, False
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[tuple[onnx.TensorProto, bool]]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t, False
        for tensor in attribute.tensors:
            yield tensor, False
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for subgraph in attribute.graphs:
            yield from _graph_tensors(subgraph)


#: Initializer types that hold shapes, indices, masks or text, never weights (INT32, INT64, UINT32, UINT64, BOOL,
#: STRING). Every other type (float, complex, and the 8/4/2-bit integers of quantized weights) holds parameters.
_NON_PARAMETER_TYPES = frozenset({6, 7, 12, 13, 9, 8})


def _batch_norm_statistics(graph: onnx.GraphProto) -> set[str]:
    """Names of the running mean/variance inputs of every BatchNormalization node (buffers, not parameters)."""
    names: set[str] = set()
    for node in graph.node:
        if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx"):
            names.update(name for name in node.input[3:5] if name)
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                names |= _batch_norm_statistics(subgraph)
    return names


def _count_initializers(proto: onnx.ModelProto) -> tuple[int, int]:
    """Parameter count and bytes of the initializers, from ``dims`` (external data is never read).

    Parameters are the weight initializers (see the package docstring): not shape/index constants, not
    BatchNormalization running statistics. Bytes count every initializer.
    """
    count = 0
    size = 0
    statistics = _batch_norm_statistics(proto.graph)
    for tensor, is_initializer in _graph_tensors(proto.graph):
        if not is_initializer:
            continue
        elements = math.prod(tensor.dims)
        if tensor.data_type not in _NON_PARAMETER_TYPES and tensor.name not in statistics:
            count += elements
        if tensor.data_type == onnx.TensorProto.STRING:
            size += sum(len(s) for s in tensor.string_data)
        else:
            size += math.ceil(elements * _element_bits(tensor.data_type) / 8)
    return count, size


def _external_files(proto: onnx.ModelProto, path: Path) -> list[_ExternalFile]:
    """The external-data files ``proto`` refers to, checked to exist and to be long enough.

    Locations must be relative paths inside the model's directory; a file there may be a symbolic link.

    Raises:
        ArtifactNotFoundError: a file is missing.
        ArtifactLoadError: a location leaves the model's directory, or a file is shorter than its tensors.
    """
    base = path.parent
    counts: dict[str, int] = {}
    ends: dict[str, tuple[int, str]] = {}
    for tensor in _all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        try:
            info = ExternalDataInfo(tensor)
        except ValueError as exc:  # negative offset or length, unparsable numbers
            raise ArtifactLoadError(
                f"'{path}': tensor {tensor.name!r} has invalid external data: {exc}.",
                hint="The file is corrupt or crafted; save the model again.",
            ) from exc
        location = info.location
        if not location or Path(location).is_absolute() or ".." in Path(location).parts:
            raise ArtifactLoadError(
                f"'{path}': tensor {tensor.name!r} has external data location {location!r}, which is not a "
                "relative path inside the model's directory.",
                hint="Save the model again with onnx.save(..., save_as_external_data=True).",
            )
        counts[location] = counts.get(location, 0) + 1
        length = info.length if info.length else math.ceil(math.prod(tensor.dims) * _element_bits(tensor.data_type) / 8)
        end = (info.offset or 0) + length
        if end > ends.get(location, (0, ""))[0]:
            ends[location] = (end, tensor.name)
    externals = []
    for location, tensors in counts.items():
        data_path = base / location
        if not data_path.is_file():
            raise ArtifactNotFoundError(
                f"External data file '{data_path}' of ONNX model '{path}' does not exist ({tensors} tensor(s) are "
                "stored in it).",
                hint=f"Put '{location}' next to '{path.name}', as it was when the model was saved.",
            )
        end, tensor_name = ends[location]
        actual = data_path.stat().st_size
        if actual < end:
            raise ArtifactLoadError(
                f"External data file '{data_path}' of ONNX model '{path}' is truncated: it has {actual} bytes but "
                f"tensor {tensor_name!r} ends at byte {end}.",
                hint="Copy or download the external data file again.",
            )
        externals.append(_ExternalFile(location, data_path, tensors))
    return externals


def _hyperparameters(proto: onnx.ModelProto) -> dict[str, Any]:
    values: dict[str, Any] = {
        "onnx.ir_version": int(proto.ir_version),
        "onnx.opset": {(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
    }
    if proto.producer_name:
        values["onnx.producer_name"] = proto.producer_name
    if proto.producer_version:
        values["onnx.producer_version"] = proto.producer_version
    if proto.model_version:
        values["onnx.model_version"] = int(proto.model_version)
    if proto.domain:
        values["onnx.domain"] = proto.domain
    props = {p.key: p.value for p in proto.metadata_props if p.key != METADATA_KEY}
    if props:
        values["onnx.metadata_props"] = props
    return values


def _input_dim_order(rank: int) -> tuple[str, ...]:
    return default_dim_order(rank)


def _order_of(index: int, rank: int, dim_orders: Sequence[Sequence[str]] | None) -> tuple[str, ...]:
    """Axis names of input ``index``: those the caller's framework adapter measured, else by rank."""
    if dim_orders is not None and index < len(dim_orders) and len(dim_orders[index]) == rank:
        return tuple(dim_orders[index])
    return _input_dim_order(rank)


_PROBED_NAMES = frozenset(name for groups in PROBE_GROUPS.values() for names in groups.values() for name in names)


def _probe_axes(rank: int, order: Sequence[str] | None = None) -> set[int]:
    """Axes :func:`probing.probe` varies for an input of this rank or axis order (batch, spatial, time, token)."""
    order = tuple(order) if order is not None else _input_dim_order(rank)
    return {axis for axis, name in enumerate(order) if name == "batch" or name in _PROBED_NAMES}
