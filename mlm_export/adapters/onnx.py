"""ONNX adapter: ``onnx.ModelProto``, ``.onnx`` file (+ external data) or exported PyTorch module -> description.

The graph is read with ``onnx.load(path, load_external_data=False)``: reading, checking and describing it never
touches the weights, so static introspection costs the same for 1 MB and 10 GB of external data. The weights are
loaded only by the onnxruntime dry-run, which confirms shapes and dtypes and probes dynamic dimensions through
:func:`mlm_export.probing.probe`. ``onnx``, ``onnxruntime``, ``numpy`` and ``torch`` are imported inside functions.

Choices made here, once:

* The ``.onnx`` file is the ``mlm:model`` asset (key ``model``, as in the other adapters) with roles ``mlm:model``
  and ``mlm:compiled`` (onnxruntime runs it without a separate model definition), ``mlm:artifact_type``
  ``onnx`` and media type ``application/octet-stream; framework=onnx``: MLM's best practices prefer
  ``application/octet-stream`` with a ``framework`` parameter to custom types, and ``application/onnx`` is not
  registered with IANA.
* Each external-data file is an asset of its own (key ``model-external-data``, or ``model-external-data-<file>``
  when there are several) with roles ``mlm:weights`` and ``weights``, media type ``application/octet-stream`` and no
  artifact type (the schema forbids one without the ``mlm:model`` role).
* ``mlm:framework`` is ``ONNX``. ``mlm:framework_version`` is the version of the onnxruntime that ran the dry-run,
  because that runtime confirmed the shapes; when no dry-run ran, it is the version of the ``onnx`` package that
  read the graph. ``mlm:accelerator`` is left unset: an ONNX file runs on any execution provider, and where the
  dry-run ran (CPU or CUDA) does not bind the model to it.
* IR version, opsets (per domain), producer, model version/domain and the model's ``metadata_props`` go to
  ``mlm:hyperparameters`` under ``onnx.*`` keys; the model's ``doc_string`` becomes the description.
* Parameters count the elements of every floating-point initializer (external ones from their ``dims``, in
  subgraphs too), except BatchNormalization running statistics (its inputs ``input_mean``/``input_var``): the same
  rule as the PyTorch adapter (parameters, not buffers), so a net exported from torch reports the torch count.
  32/64-bit integer, boolean and string initializers (shape constants, indices) are not parameters; 8/4-bit
  integers (quantized weights) are. A BatchNorm the exporter folded
  into the preceding convolution is counted as that convolution's weights. ``memory_size`` is the size in bytes of
  every initializer.
* ``embed_metadata=True`` writes ``metadata_props["mlm"]`` (JSON: name, architecture, tasks, bands, classes,
  description, taken from ``ExportOptions.metadata``) into a *copy* of the model in the artifact directory, and
  that copy is the published artifact. Describing a file with that entry recovers those values.
* Files are written into a hidden staging directory inside the artifact directory and moved into place with
  ``os.replace`` (external data first, then the ``.onnx``), so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlm_export.adapters import ExportOptions
from mlm_export.description import (
    DATA_TYPES,
    TASKS,
    Artifact,
    Band,
    InputSpec,
    ModelDescription,
    OutputSpec,
    classes_from,
    slugify,
)
from mlm_export.errors import (
    ArtifactLoadError,
    ArtifactNotFoundError,
    ConfigurationError,
    DescriptionError,
    OutputError,
    OutputExistsError,
    ProbeError,
    SourceError,
    UnsupportedSourceError,
)
from mlm_export.probing import (
    DEFAULT_SIZES,
    LAYOUT_BY_RANK,
    LAYOUTS,
    PROBE_GROUPS,
    MeasuredTensor,
    ProbeInput,
    ProbeResult,
    generic_dim_order,
    output_dim_order,
    probe,
)

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import torch

FRAMEWORK = "ONNX"
ARTIFACT_TYPE = "onnx"
MEDIA_TYPE = "application/octet-stream; framework=onnx"
DATA_MEDIA_TYPE = "application/octet-stream"
MODEL_KEY = "model"
DATA_KEY = "model-external-data"
MODEL_ROLES = ("mlm:model", "mlm:compiled")
DATA_ROLES = ("mlm:weights", "weights")
#: ``metadata_props`` key of the embedded MLM metadata.
METADATA_KEY = "mlm"
#: Keys of ``ExportOptions.metadata`` that ``embed_metadata`` writes.
EMBEDDED_KEYS = ("name", "architecture", "tasks", "bands", "classes", "description")
#: Size of a dynamic dimension in the dry-run when neither the caller nor the layout defaults give one.
FALLBACK_SIZE = 8
#: In-memory models larger than this are saved with their tensors in ``<name>.onnx.data`` (protobuf's 2 GiB limit).
INLINE_LIMIT = 1_800_000_000

_ELEMENT_NAMES = {"FLOAT": "float32", "DOUBLE": "float64", "STRING": "string", "UNDEFINED": "undefined"}
_MLM_TYPES = {"complex64": "cfloat32", "complex128": "cfloat64"}
_ELEMENT_BITS = {
    "float32": 32, "float64": 64, "float16": 16, "bfloat16": 16, "bool": 8, "complex64": 64, "complex128": 128,
    "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64,
    "int4": 4, "uint4": 4, "float4e2m1": 4, "int2": 2, "uint2": 2,
}  # fmt: skip
_GENERIC_GRAPH_NAMES = {"", "main_graph", "torch_jit", "torch-jit-export", "graph", "model", "tf2onnx", "test"}
_EXPRESSION_WORDS = {"floor", "ceil", "max", "min", "mod", "floordiv", "ceildiv", "abs", "sym_max", "sym_min"}
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

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


@dataclass(frozen=True)
class _Measured:
    """Result of the onnxruntime dry-run."""

    result: ProbeResult
    base: list[tuple[int, ...]]
    caller_fixed: list[set[int]]
    probed: list[set[int]]
    accelerator: str
    runtime_version: str


# --------------------------------------------------------------------------------------------------------------
# Adapter interface


def can_describe(source: Any) -> bool:
    """Whether ``source`` is an ``onnx.ModelProto``, a ``.onnx`` path or a torch module (exported to ONNX).

    .. versionadded:: 0.1
    """
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower() == ".onnx"
    return _is_model_proto(source) or _is_torch_module(source)


def describe(source: Any, options: ExportOptions) -> ModelDescription:
    """Describe an ONNX model: read the graph statically, then dry-run it with onnxruntime.

    Args:
        source: an ``onnx.ModelProto``, a path to a ``.onnx`` file, or a ``torch.nn.Module`` to export to ONNX.
        options: what the caller told ``export_item`` (artifact directory, shapes, device, embedding...).

    Returns:
        The description; its ``mlm:model`` artifact is the ``.onnx`` file, one more artifact per external-data file.

    Raises:
        ArtifactNotFoundError: the file or one of its external-data files does not exist.
        ArtifactLoadError: the file is not an ONNX model, is truncated or fails ``onnx.checker.check_model``.
        UnsupportedSourceError: ``source`` is none of the above.

    .. versionadded:: 0.1
    """
    if _is_model_proto(source):
        return _describe_proto(source, options)
    if _is_torch_module(source):
        return describe_torch_module(source, options)
    if isinstance(source, (str, os.PathLike)):
        return _describe_path(Path(os.path.abspath(source)), options)
    raise UnsupportedSourceError(
        f"The ONNX adapter cannot describe a {type(source).__module__}.{type(source).__qualname__}.",
        hint="Pass an onnx.ModelProto, a path to a .onnx file or a torch.nn.Module.",
    )


def describe_static(path: str | os.PathLike[str]) -> ModelDescription:
    """Describe a ``.onnx`` file from its graph alone: no dry-run, no weights read, nothing written.

    Shapes are the declared ones (completed by ONNX shape inference), -1 where the graph has a symbolic or unknown
    dimension.

    Raises:
        ArtifactNotFoundError: the file or one of its external-data files does not exist.
        ArtifactLoadError: the file is not a valid ONNX model.

    .. versionadded:: 0.1
    """
    graph = _load_graph(Path(os.path.abspath(path)))
    return _describe_graph(graph, ExportOptions(), name=graph.path.stem, architecture=None, dry_run=False)


def describe_torch_module(
    module: torch.nn.Module | torch.export.ExportedProgram, options: ExportOptions
) -> ModelDescription:
    """Export ``module`` with ``torch.onnx.export`` to ``<artifact_dir>/<slug>.onnx`` and describe that file.

    The batch dimension is exported dynamic, and so are height/width (image inputs) and time (sequence inputs)
    when the module allows it; the onnxruntime dry-run then measures which of them really are. The module's
    training flags are restored afterwards.

    Args:
        module: the module to export (it stays on its device), or an ``ExportedProgram``, whose own dynamic
            dimensions are kept.
        options: ``example_input`` (a tensor, a tuple of tensors or a dict of keyword tensors) or ``input_shape``
            (with ``input_dtype``) gives the export example; ``artifact_dir`` (default ``./artifacts``) where the
            ``.onnx`` and its ``.onnx.data`` go.

    Raises:
        ConfigurationError: neither ``example_input`` nor ``input_shape`` was given.
        ProbeError: the module's forward fails on the example.
        SourceError: ``torch.onnx.export`` fails.

    .. versionadded:: 0.1
    """
    args, kwargs = _torch_example(module, options)
    metadata = dict(options.metadata or {})
    architecture = str(metadata.get("architecture") or type(module).__name__)
    name = str(metadata.get("name") or architecture)
    payload = _metadata_payload(options, name, architecture) if options.embed_metadata else None
    target = _artifact_dir(options)
    with _staging(target) as stage:
        onnx_path = stage / f"{_slug(name)}.onnx"
        _export_torch(module, args, kwargs, onnx_path, options.input_dim_orders)
        if payload is not None:
            _embed_in_file(onnx_path, payload)
        graph = _load_graph(onnx_path)
        requested = _example_shapes(graph, args, kwargs)
        plain = replace(options, example_input=None, input_shape=None)
        described = _describe_graph(
            graph, plain, name=name, architecture=architecture, requested=requested, examples=True
        )
        moved = _commit(stage, target, overwrite=options.overwrite)
    return _relocate(described, moved)


def load_artifact(path: str | os.PathLike[str], artifact_type: str, options: ExportOptions) -> Any:
    """Open a published ONNX artifact as an ``onnxruntime.InferenceSession`` (for :mod:`mlm_export.loading`).

    The file is read and checked as by :func:`describe` first; ``options.device`` picks the execution provider.

    Raises:
        ArtifactNotFoundError: the file or one of its external-data files does not exist.
        ArtifactLoadError: the file is not a valid ONNX model, or onnxruntime cannot load it.

    .. versionadded:: 0.1
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state

    graph = _load_graph(Path(os.path.abspath(path)))
    providers, _ = _providers(ort, options.device, [])
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

    .. versionadded:: 0.1
    """
    import numpy as np

    shapes = {name: tuple(shape) for name, shape, _ in inputs}
    ordered = [tuple(shape) for _, shape, _ in inputs]
    feeds = {}
    for index, meta in enumerate(session.get_inputs()):
        shape = shapes.get(meta.name, ordered[index] if index < len(ordered) else None)
        if shape is None:
            raise ProbeError(f"No shape was given for ONNX input {meta.name!r}.", hint="Declare every graph input.")
        element = meta.type.removeprefix("tensor(").removesuffix(")")
        if element == "string":
            feeds[meta.name] = np.full(shape, "", dtype=object)
            continue
        dtype = np.dtype({"float": "float32", "double": "float64"}.get(element, element))
        if dtype.kind in "fc":
            feeds[meta.name] = np.random.default_rng(index).standard_normal(shape).astype(dtype)
        else:
            feeds[meta.name] = np.zeros(shape, dtype=dtype)
    try:
        return _run_session(session, feeds, [o.name for o in session.get_outputs()])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no base class; all are reported
        shown = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
        raise ProbeError(f"onnxruntime failed on inputs {shown}: {_first_line(exc)}") from exc


# --------------------------------------------------------------------------------------------------------------
# Sources


def _is_model_proto(source: Any) -> bool:
    onnx_module = sys.modules.get("onnx")
    return onnx_module is not None and isinstance(source, onnx_module.ModelProto)


def _is_torch_module(source: Any) -> bool:
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(source, torch_module.nn.Module)


def _describe_path(path: Path, options: ExportOptions) -> ModelDescription:
    graph = _load_graph(path)
    name = _default_name(graph, path.stem)
    architecture = _default_architecture(graph)
    described = _describe_graph(graph, options, name=name, architecture=architecture)
    if not options.embed_metadata:
        return described
    payload = _metadata_payload(options, described.name, described.architecture)
    described = _apply_embedded(described, payload, graph.path)
    target = _artifact_dir(options)
    same_dir = target.exists() and target.resolve() == path.parent.resolve()
    filename = f"{_slug(payload['name'])}.onnx"
    if (target / filename).resolve() == path.resolve():
        filename = f"{_slug(payload['name'])}-mlm.onnx"
    copy = _copy_proto(graph.proto)
    _set_metadata(copy, payload)
    with _staging(target) as stage:
        _save_proto(copy, stage / filename)
        if not same_dir:
            for external in graph.externals:
                _copy(external.path, stage / external.location)
        moved = _commit(stage, target, overwrite=options.overwrite)
    moved[str(graph.path)] = str(target / filename)
    if not same_dir:
        for external in graph.externals:
            moved[str(external.path)] = str(target / external.location)
    return _relocate(described, moved)


def _describe_proto(proto: onnx.ModelProto, options: ExportOptions) -> ModelDescription:
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    for tensor in _all_tensors(proto):
        if uses_external_data(tensor) and not tensor.HasField("raw_data"):
            raise ArtifactNotFoundError(
                f"The in-memory ModelProto refers to external data '{ExternalDataInfo(tensor).location}' "
                f"(tensor {tensor.name!r}), which cannot be found without the model's file path.",
                hint="Pass the path of the .onnx file instead, or load it with onnx.load(path) so the weights "
                "are in memory.",
            )
    metadata = dict(options.metadata or {})
    embedded = _read_embedded(proto, "the in-memory ModelProto")
    graph_name = proto.graph.name
    name = str(
        metadata.get("name")
        or (embedded or {}).get("name")
        or (graph_name if _meaningful(graph_name) else "onnx-model")
    )
    architecture = str((embedded or {}).get("architecture") or (graph_name if _meaningful(graph_name) else "unknown"))
    copy = proto
    payload = None
    if options.embed_metadata or proto.ByteSize() > INLINE_LIMIT:
        copy = _copy_proto(proto)
    if options.embed_metadata:
        payload = _metadata_payload(options, name, architecture)
        _set_metadata(copy, payload)
    target = _artifact_dir(options)
    with _staging(target) as stage:
        path = stage / f"{_slug(name)}.onnx"
        _save_proto(copy, path, data_location=f"{path.name}.data")
        graph = _load_graph(path)  # its embedded metadata, if any, is applied by _describe_graph
        described = _describe_graph(graph, options, name=name, architecture=architecture)
        moved = _commit(stage, target, overwrite=options.overwrite)
    return _relocate(described, moved)


def _default_name(graph: _Graph, fallback: str) -> str:
    embedded = graph.embedded or {}
    return str(embedded.get("name") or fallback)


def _default_architecture(graph: _Graph) -> str:
    embedded = graph.embedded or {}
    if embedded.get("architecture"):
        return str(embedded["architecture"])
    return graph.graph_name if _meaningful(graph.graph_name) else "unknown"


def _meaningful(graph_name: str) -> bool:
    """Whether an ONNX graph name says something (not ``main_graph`` or a hex id)."""
    return (
        graph_name.lower() not in _GENERIC_GRAPH_NAMES
        and re.fullmatch(r"[0-9a-fA-F-]{16,}", graph_name) is None
        and re.match(r"[A-Za-z]", graph_name) is not None
    )


# --------------------------------------------------------------------------------------------------------------
# Static read


def _load_graph(path: Path) -> _Graph:
    """Read, check and summarise ``path`` without loading external data.

    Raises:
        ArtifactNotFoundError: ``path`` or an external-data file is missing.
        ArtifactLoadError: not an ONNX model, truncated, or rejected by the ONNX checker.
    """
    import onnx
    from google.protobuf.message import DecodeError

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
    externals = _external_files(proto, path)
    try:
        onnx.checker.check_model(_without_external_data(proto) if externals else proto)
    except onnx.checker.ValidationError as exc:
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
    from onnx.external_data_helper import uses_external_data

    copy = _copy_proto(proto)
    for tensor in _all_tensors(copy):
        if uses_external_data(tensor):
            tensor.ClearField("external_data")
            tensor.ClearField("data_location")
            tensor.ClearField("dims")
            tensor.dims.append(0)
    return copy


def _infer_shapes(proto: onnx.ModelProto, path: Path, notes: list[str]) -> onnx.ModelProto | None:
    import onnx

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
    import onnx

    try:
        name = onnx.TensorProto.DataType.Name(element_type)
    except ValueError:
        return f"type-{element_type}"
    return _ELEMENT_NAMES.get(name, name.lower())


def _mlm_type(element: str) -> str:
    """MLM data type of an element name; ``other`` for types MLM lacks (bool, bfloat16, string...)."""
    element = {"object": "string", "str": "string"}.get(element, element)
    return _MLM_TYPES.get(element, element if element in DATA_TYPES else "other")


def _element_bits(element_type: int) -> int:
    name = _element_name(element_type)
    if name in _ELEMENT_BITS:
        return _ELEMENT_BITS[name]
    if name.startswith("float8"):
        return 8
    import onnx

    try:
        return int(onnx.helper.tensor_dtype_to_np_dtype(element_type).itemsize) * 8
    except (KeyError, ValueError, TypeError):
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
    """Element count and bytes of every initializer, from ``dims`` (external data is never read)."""
    import onnx

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
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    base = path.parent
    counts: dict[str, int] = {}
    ends: dict[str, tuple[int, str]] = {}
    for tensor in _all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
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


# --------------------------------------------------------------------------------------------------------------
# Description


def _describe_graph(
    graph: _Graph,
    options: ExportOptions,
    *,
    name: str,
    architecture: str | None,
    dry_run: bool = True,
    requested: Mapping[str, tuple[int, ...]] | None = None,
    examples: bool = False,
) -> ModelDescription:
    import onnx

    notes = list(graph.notes)
    measured = None
    if dry_run:
        if requested is None:
            requested, examples = _requested_shapes(options, [v.name for v in graph.inputs])
        measured = _dry_run(graph, options, requested, examples, notes)
    inputs, dynamic_params = _input_specs(graph, measured, notes)
    outputs = _output_specs(graph, measured, dynamic_params, inputs, notes)
    described = ModelDescription(
        name=name,
        architecture=architecture or _default_architecture(graph),
        tasks=(),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        framework=FRAMEWORK,
        framework_version=measured.runtime_version if measured else onnx.__version__,
        total_parameters=graph.parameters,
        memory_size=graph.memory_size,
        hyperparameters=dict(graph.hyperparameters),
        artifacts=tuple(_artifacts(graph)),
        description=graph.doc,
        notes=tuple(notes),
    )
    if graph.embedded:
        described = _apply_embedded(described, graph.embedded, graph.path)
    return described


def _artifacts(graph: _Graph) -> list[Artifact]:
    artifacts = [
        Artifact(
            key=MODEL_KEY,
            roles=MODEL_ROLES,
            path=str(graph.path),
            artifact_type=ARTIFACT_TYPE,
            media_type=MEDIA_TYPE,
            title=graph.path.name,
            description="ONNX model"
            + (f"; its weights are in {len(graph.externals)} external data file(s)." if graph.externals else "."),
        )
    ]
    keys = {MODEL_KEY}
    for external in graph.externals:
        key = DATA_KEY if len(graph.externals) == 1 else f"{DATA_KEY}-{_slug(external.location)}"
        while key in keys:
            key += "-1"
        keys.add(key)
        artifacts.append(
            Artifact(
                key=key,
                roles=DATA_ROLES,
                path=str(external.path),
                media_type=DATA_MEDIA_TYPE,
                title=external.location,
                description=f"External data of ONNX model {graph.path.name} ({external.tensors} tensor(s)).",
            )
        )
    return artifacts


def _input_dim_order(rank: int) -> tuple[str, ...]:
    layout = LAYOUT_BY_RANK.get(rank)
    return LAYOUTS[layout] if layout is not None else generic_dim_order(rank)


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


def _tensor_text(role: str, value: _Value, order: Sequence[str], extra: Sequence[str] = ()) -> str:
    parts = [f"ONNX {role} of type {value.type_text}"]
    if value.dims is not None:
        if not value.dims:
            parts.append("a scalar (rank 0), written as shape [1]")
        symbolic = [f"{order[a]}={d}" for a, d in enumerate(value.dims) if isinstance(d, str) and a < len(order)]
        if symbolic:
            parts.append("the graph declares symbolic dims " + ", ".join(symbolic))
    elif value.is_tensor:
        parts.append("rank unknown")
    if value.is_tensor and value.data_type == "other":
        parts.append(f"MLM has no data type for {value.element}, so data_type is 'other'")
    parts.extend(extra)
    return "; ".join(parts) + "."


def _input_specs(graph: _Graph, measured: _Measured | None, notes: list[str]) -> tuple[list[InputSpec], set[str]]:
    specs: list[InputSpec] = []
    dynamic_params: set[str] = set()
    for index, value in enumerate(graph.inputs):
        extra: list[str] = []
        if value.dims is None:
            shape: tuple[int, ...] = (-1,)
            order: tuple[str, ...] = ("batch",)
        elif not value.dims:
            shape, order = (1,), ("value",)
        else:
            order = (
                measured.result.input_dim_orders[index] if measured is not None else _input_dim_order(len(value.dims))
            )
            sizes = []
            refused: list[str] = []
            for axis, dim in enumerate(value.dims):
                size = dim if isinstance(dim, int) else -1
                if measured is not None and not isinstance(dim, int):
                    base = measured.base[index][axis]
                    if axis in measured.caller_fixed[index]:
                        size = base
                    elif axis in measured.probed[index] and measured.result.input_shapes[index][axis] != -1:
                        size = base
                        if axis != 0:  # probing already notes a fixed batch
                            refused.append(f"{order[axis]}={base}")
                if size == -1 and isinstance(dim, str):
                    dynamic_params.add(dim)
                sizes.append(size)
            shape = tuple(sizes)
            if refused:
                notes.append(
                    f"Input {value.name!r}: the graph declares {', '.join(r.split('=')[0] for r in refused)} dynamic, "
                    f"but the model failed at other sizes, so they are fixed ({', '.join(refused)})."
                )
            if measured is not None and index in measured.result.input_notes:
                extra.append(measured.result.input_notes[index])
        specs.append(
            InputSpec(
                name=value.name,
                shape=shape,
                dim_order=order,
                data_type=value.data_type,
                description=_tensor_text("input", value, order, extra),
            )
        )
    return specs, dynamic_params


def _param_dynamic(param: str, dynamic_params: set[str], input_params: set[str]) -> bool:
    """Whether a symbolic output dim varies: it names a dynamic input dim, or something no input names."""
    tokens = {t for t in _TOKEN.findall(param) if t.lower() not in _EXPRESSION_WORDS}
    if not tokens or tokens - input_params:
        return True
    return bool(tokens & dynamic_params)


def _output_specs(
    graph: _Graph,
    measured: _Measured | None,
    dynamic_params: set[str],
    inputs: Sequence[InputSpec],
    notes: list[str],
) -> list[OutputSpec]:
    input_params = {d for v in graph.inputs for d in (v.dims or ()) if isinstance(d, str)}
    layouts = [LAYOUT_BY_RANK.get(len(i.shape)) for i in inputs]
    input_orders = [i.dim_order for i in inputs]
    specs = []
    for index, value in enumerate(graph.outputs):
        data_type = value.data_type
        extra: list[str] = []
        if measured is not None:
            tensor = measured.result.outputs[index]
            shape = list(tensor.shape)
            static = value.dims
            if static is not None and len(static) == len(shape):
                for axis, dim in enumerate(static):
                    if shape[axis] == -1:
                        continue
                    if isinstance(dim, str) and _param_dynamic(dim, dynamic_params, input_params):
                        shape[axis] = -1
                    elif isinstance(dim, int) and dim != shape[axis]:
                        notes.append(
                            f"Output {value.name!r}: the graph declares size {dim} on axis {axis}, onnxruntime "
                            f"returned {shape[axis]}; the measured size is used."
                        )
            elif static is not None and value.is_tensor:
                notes.append(
                    f"Output {value.name!r}: the graph declares rank {len(static)}, onnxruntime returned rank "
                    f"{len(shape)}; the measured shape is used."
                )
            if tensor.data_type != data_type:
                notes.append(
                    f"Output {value.name!r}: the graph declares {value.type_text}, onnxruntime returned "
                    f"{tensor.description or tensor.data_type}; the measured type is used."
                )
                data_type = tensor.data_type
        elif value.dims is not None:
            shape = [d if isinstance(d, int) else -1 for d in value.dims]
        else:
            shape = [-1]
        if not shape:
            shape, order = [1], ("value",)
        else:
            order = output_dim_order(shape, layouts, input_orders)
        specs.append(
            OutputSpec(
                name=value.name,
                shape=tuple(shape),
                dim_order=order,
                data_type=data_type,
                description=_tensor_text("output", value, order, extra),
            )
        )
    return specs


# --------------------------------------------------------------------------------------------------------------
# Dry-run


def _degrade(notes: list[str], message: str) -> None:
    """Record a degraded-but-valid result in the notes and warn."""
    notes.append(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _ort_errors(state: Any) -> tuple[type[BaseException], ...]:
    """The exception classes of onnxruntime (they derive from Exception directly)."""
    found = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return (*found, RuntimeError, OSError, ValueError)


def _providers(ort: Any, device: Any, notes: list[str]) -> tuple[list[Any], str]:
    text = str(device if device is not None else "cpu").lower()
    if text.startswith("cuda"):
        index = int(text.split(":", 1)[1]) if ":" in text and text.split(":", 1)[1].isdigit() else 0
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], "cuda"
        _degrade(
            notes,
            f"device={device!r} was asked for, but this onnxruntime has no CUDAExecutionProvider; "
            "the dry-run ran on the CPU.",
        )
    elif not text.startswith("cpu"):
        _degrade(notes, f"device={device!r} is not supported by the ONNX dry-run; it ran on the CPU.")
    return ["CPUExecutionProvider"], "amd64"


def _dry_run(
    graph: _Graph,
    options: ExportOptions,
    requested: Mapping[str, tuple[int, ...]],
    examples: bool,
    notes: list[str],
) -> _Measured | None:
    """Run the model with onnxruntime and probe its dynamic dims; None (and a note) when it cannot run."""
    dim_orders = options.input_dim_orders
    base, caller_fixed = _base_shapes(graph, requested, examples, dim_orders)
    unusable = [v for v in graph.inputs if not v.is_tensor or v.dims is None]
    if unusable:
        names = ", ".join(f"{v.name!r} ({v.type_text})" for v in unusable)
        _degrade(notes, f"The onnxruntime dry-run was skipped: input(s) {names} have no known tensor shape to build.")
        return None
    try:
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state
    except ImportError as exc:
        _degrade(notes, f"The onnxruntime dry-run was skipped: onnxruntime is not installed ({exc}).")
        return None
    providers, accelerator = _providers(ort, options.device, notes)
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 4  # failed probes are expected; onnxruntime would log each one
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

    output_names = [o.name for o in session.get_outputs()]
    probe_inputs = [
        ProbeInput(
            name=v.name,
            shape=base[i],
            data_type=v.data_type,
            dim_order=_order_of(i, len(v.dims or ()), dim_orders),
            fixed=tuple(isinstance(d, int) or a in caller_fixed[i] for a, d in enumerate(v.dims or ())),
        )
        for i, v in enumerate(graph.inputs)
    ]
    probed = [
        _probe_axes(len(v.dims or ()), _order_of(i, len(v.dims or ()), dim_orders))
        - {a for a, d in enumerate(v.dims or ()) if isinstance(d, int)}
        - caller_fixed[i]
        if options.probe_dynamic
        else set()
        for i, v in enumerate(graph.inputs)
    ]

    def runner(shapes: Sequence[tuple[int, ...]]) -> list[MeasuredTensor]:
        pairs = zip(graph.inputs, shapes, strict=True)
        feeds = {v.name: _feed(v, shape, seed) for seed, (v, shape) in enumerate(pairs)}
        return _run_session(session, feeds, output_names)

    try:
        result = probe(runner, probe_inputs, probe_dynamic=options.probe_dynamic, base_shapes=base)
    except ProbeError as exc:
        _degrade(
            notes,
            f"The onnxruntime dry-run failed on inputs of shape {', '.join(str(list(s)) for s in base)} "
            f"({_first_line(exc.__cause__ or exc)}); shapes are the ones the graph declares.",
        )
        return None
    notes.extend(result.notes)
    return _Measured(result, base, caller_fixed, probed, accelerator, ort.__version__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _feed(value: _Value, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A deterministic input array: normal floats, zero integers, False booleans, empty strings."""
    import numpy as np
    import onnx

    if value.element == "string":
        return np.full(shape, "", dtype=object)
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value.element_type or onnx.TensorProto.FLOAT))
    if dtype.kind in "fc":
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)


def _run_session(session: Any, feeds: Mapping[str, Any], names: Sequence[str]) -> list[MeasuredTensor]:
    """Run once and measure every output. Outputs numpy cannot hold (bfloat16, float8) are read as OrtValues."""
    try:
        values = session.run(None, dict(feeds))
    except RuntimeError as exc:
        if "No corresponding Numpy type" not in str(exc):
            raise
        import onnxruntime as ort

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
    import numpy as np

    if isinstance(value, np.ndarray):
        data_type = _mlm_type(value.dtype.name)
        non_finite = value.dtype.kind in "fc" and value.size > 0 and not bool(np.isfinite(value).all())
        return MeasuredTensor(name, tuple(value.shape), data_type, non_finite=non_finite, description=value.dtype.name)
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
    """Concrete dry-run shapes and, per input, the axes the caller fixed (``input_shape`` sizes).

    A symbolic dim shared by several inputs gets one size. Dynamic dims take the caller's size, else the layout's
    default (batch 1, height/width 64, time 8), else ``FALLBACK_SIZE``.

    Raises:
        ConfigurationError: a requested shape has the wrong rank or contradicts a fixed dim.
    """
    params: dict[str, int] = {}
    for value in graph.inputs:
        want = requested.get(value.name)
        if want is None or value.dims is None:
            continue
        if len(want) != len(value.dims):
            raise ConfigurationError(
                f"input_shape {list(want)} for input {value.name!r} has {len(want)} dimensions, but the graph "
                f"declares {len(value.dims)}: {[d if d is not None else '?' for d in value.dims]}.",
                hint="Give one size per dimension; -1 keeps a dynamic one.",
            )
        for dim, size in zip(value.dims, want, strict=True):
            if isinstance(dim, int) and size not in (-1, dim):
                raise ConfigurationError(
                    f"input_shape {list(want)} for input {value.name!r} contradicts the graph's fixed shape "
                    f"{[d if d is not None else '?' for d in value.dims]}.",
                    hint="Only dynamic dimensions can be given another size.",
                )
            if isinstance(dim, str) and size >= 0:
                params.setdefault(dim, size)
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


def _requested_shapes(options: ExportOptions, names: Sequence[str]) -> tuple[dict[str, tuple[int, ...]], bool]:
    """Shapes by input name from ``example_input`` (probed) or ``input_shape`` (sizes given are fixed)."""
    if options.example_input is not None:
        return _shapes_by_name(options.example_input, names, "example_input", from_arrays=True), True
    if options.input_shape is not None:
        return _shapes_by_name(options.input_shape, names, "input_shape", from_arrays=False), False
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


# --------------------------------------------------------------------------------------------------------------
# Embedded metadata


def _metadata_payload(options: ExportOptions, name: str, architecture: str | None) -> dict[str, Any]:
    """The JSON written to ``metadata_props["mlm"]`` from ``options.metadata`` (name falls back to ``name``).

    Raises:
        ConfigurationError: a task, band or class in ``options.metadata`` is invalid.
    """
    from mlm_export import __version__

    metadata = dict(options.metadata or {})
    payload: dict[str, Any] = {"name": str(metadata.get("name") or name), "generator": f"mlm-export {__version__}"}
    arch = metadata.get("architecture") or architecture
    if arch and arch != "unknown":
        payload["architecture"] = str(arch)
    if metadata.get("description"):
        payload["description"] = str(metadata["description"])
    if metadata.get("tasks") is not None:
        tasks = [str(t) for t in metadata["tasks"]]
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            raise ConfigurationError(f"tasks {bad} are not MLM tasks.", hint=f"Use among {list(TASKS)}.")
        payload["tasks"] = tasks
    if metadata.get("bands") is not None:
        bands = []
        for band in metadata["bands"]:
            if isinstance(band, str):
                bands.append({"name": band})
            elif isinstance(band, Mapping) and band.get("name"):
                bands.append({k: str(band[k]) for k in ("name", "description") if band.get(k)})
            else:
                raise ConfigurationError(f"band {band!r} needs a name.", hint="Give names or {'name': ...} dicts.")
        payload["bands"] = bands
    if metadata.get("classes") is not None:
        try:
            payload["classes"] = [c.to_dict() for c in classes_from(metadata["classes"])]
        except DescriptionError as exc:
            raise ConfigurationError(exc.message, hint="Check classes=.") from exc
    return payload


def _read_embedded(proto: onnx.ModelProto, where: str) -> dict[str, Any] | None:
    for prop in proto.metadata_props:
        if prop.key != METADATA_KEY:
            continue
        try:
            payload = json.loads(prop.value)
        except json.JSONDecodeError as exc:
            message = f"{where}: metadata_props['mlm'] is not JSON ({exc}); it is ignored."
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            return None
        if not isinstance(payload, dict):
            message = f"{where}: metadata_props['mlm'] is not a JSON object; it is ignored."
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            return None
        return payload
    return None


def _apply_embedded(described: ModelDescription, payload: Mapping[str, Any], where: Path) -> ModelDescription:
    """Apply embedded name, architecture, description, tasks, bands and classes; warn and skip what is invalid."""
    try:
        return _apply_embedded_values(described, payload)
    except (DescriptionError, TypeError, ValueError, KeyError) as exc:
        warnings.warn(
            f"'{where}': the embedded MLM metadata could not be applied ({exc}); it is ignored.",
            RuntimeWarning,
            stacklevel=3,
        )
        return described


def _apply_embedded_values(described: ModelDescription, payload: Mapping[str, Any]) -> ModelDescription:
    changes: dict[str, Any] = {}
    for key in ("name", "architecture", "description"):
        if isinstance(payload.get(key), str) and payload[key]:
            changes[key] = payload[key]
    tasks = payload.get("tasks")
    if isinstance(tasks, list):
        changes["tasks"] = tuple(t for t in tasks if t in TASKS)
    inputs = list(described.inputs)
    bands = payload.get("bands", payload.get("band_definitions"))  # the latter: ModelDescription.to_dict()
    if isinstance(bands, list) and bands:
        definitions = tuple(
            Band(name=str(b["name"]), description=b.get("description")) if isinstance(b, Mapping) else Band(name=str(b))
            for b in bands
        )
        names = tuple(b.name for b in definitions)
        for index, spec in enumerate(inputs):
            axis = next((spec.dim_order.index(d) for d in ("channel", "bands") if d in spec.dim_order), None)
            if axis is not None and spec.shape[axis] in (-1, len(names)):
                order = tuple("bands" if a == axis else d for a, d in enumerate(spec.dim_order))
                inputs[index] = replace(spec, bands=names, dim_order=order)
                changes["band_definitions"] = definitions
                break
        else:
            raise ValueError(f"no input has {len(names)} channels for bands {list(names)}")
    outputs = list(described.outputs)
    classes = payload.get("classes")
    if classes is None and isinstance(payload.get("outputs"), list):  # ModelDescription.to_dict()
        classes = next((o["classes"] for o in payload["outputs"] if isinstance(o, Mapping) and o.get("classes")), None)
    if isinstance(classes, list) and classes:
        infos = classes_from(classes)
        for index, spec in enumerate(outputs):
            if "class" in spec.dim_order and spec.shape[spec.dim_order.index("class")] in (-1, len(infos)):
                outputs[index] = replace(spec, classes=infos)
                break
        else:
            raise ValueError(f"no output has {len(infos)} classes")
    changes["inputs"] = tuple(inputs)
    changes["outputs"] = tuple(outputs)
    return described.replace(**changes)


def _set_metadata(proto: onnx.ModelProto, payload: Mapping[str, Any]) -> None:
    """Replace ``metadata_props["mlm"]`` of ``proto`` (a copy) by ``payload`` as JSON."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in kept:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(payload, sort_keys=True)


def _embed_in_file(path: Path, payload: Mapping[str, Any]) -> None:
    """Rewrite the graph file ``path`` (ours, in staging) with ``payload`` embedded; external data is untouched."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    _set_metadata(proto, payload)
    _save_proto(proto, path)


# --------------------------------------------------------------------------------------------------------------
# Files


def _slug(name: str) -> str:
    return slugify(name).lower()


def _artifact_dir(options: ExportOptions) -> Path:
    directory = Path(options.artifact_dir) if options.artifact_dir is not None else Path.cwd() / "artifacts"
    return Path(os.path.abspath(directory))


def _copy_proto(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def _save_proto(proto: onnx.ModelProto, path: Path, *, data_location: str | None = None) -> None:
    """Save ``proto`` to ``path``; above :data:`INLINE_LIMIT` its tensors go to ``data_location`` (mutates proto)."""
    import onnx

    try:
        if data_location is not None and proto.ByteSize() > INLINE_LIMIT:
            onnx.save_model(proto, str(path), save_as_external_data=True, location=data_location, size_threshold=1024)
        else:
            onnx.save_model(proto, str(path))
    except OSError as exc:
        message = f"Cannot write '{path}': {exc.strerror or exc}."
        raise OutputError(message, hint="Check the artifact directory.") from exc


def _copy(source: Path, destination: Path) -> None:
    """Copy an external-data file (not a hard link: the ONNX checker refuses files with several links)."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    except OSError as exc:
        raise OutputError(f"Cannot copy '{source}' to '{destination}': {exc.strerror or exc}.") from exc


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A hidden directory inside ``target``; removed with everything in it when the block ends."""
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".mlm-export-", dir=target))
    except OSError as exc:
        raise OutputError(
            f"Cannot write into artifact directory '{target}': {exc.strerror or exc}.",
            hint="Pass a writable artifact_dir.",
        ) from exc
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    shutil.rmtree(stage, ignore_errors=True)


def _commit(stage: Path, target: Path, *, overwrite: bool = False) -> dict[str, str]:
    """Move every staged file to ``target`` (side files first, ``.onnx`` last); return old -> new paths.

    Raises:
        OutputExistsError: a file of that name is already there and ``overwrite`` is False.
    """
    files = sorted((p for p in stage.rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".onnx", str(p)))
    taken = [target / f.relative_to(stage) for f in files if (target / f.relative_to(stage)).exists()]
    if taken and not overwrite:
        raise OutputExistsError(
            f"Artifact '{taken[0]}' already exists; an earlier item may point to it.",
            hint="Pass overwrite=True to replace it, or another artifact_dir.",
        )
    moved: dict[str, str] = {}
    try:
        for staged in files:
            final = target / staged.relative_to(stage)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            moved[str(staged)] = str(final)
    except OSError as exc:
        for final in moved.values():
            with contextlib.suppress(OSError):
                os.remove(final)
        raise OutputError(f"Cannot move the exported files into '{target}': {exc.strerror or exc}.") from exc
    return moved


def _relocate(described: ModelDescription, moved: Mapping[str, str]) -> ModelDescription:
    artifacts = tuple(
        replace(a, path=moved.get(a.path, a.path)) if a.path is not None else a for a in described.artifacts
    )
    return described.replace(artifacts=artifacts)


# --------------------------------------------------------------------------------------------------------------
# PyTorch export


def _torch_example(module: torch.nn.Module, options: ExportOptions) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The export example as (args, kwargs), from ``example_input``, ``input_shape`` or ``example_input_array``.

    Raises:
        ConfigurationError: there is no example, or ``input_shape``/``input_dtype`` is malformed.
    """
    import torch

    example = options.example_input
    if example is None and options.input_shape is None:
        example = getattr(module, "example_input_array", None)
        program_example = getattr(module, "example_inputs", None)
        if isinstance(module, torch.export.ExportedProgram) and program_example is not None:
            program_args, program_kwargs = program_example
            return tuple(program_args), dict(program_kwargs or {})
    if example is not None:
        if isinstance(example, torch.Tensor):
            return (example,), {}
        if isinstance(example, Mapping):
            return (), dict(example)
        if isinstance(example, (tuple, list)):
            return tuple(example), {}
        raise ConfigurationError(
            f"example_input is a {type(example).__name__}.", hint="Pass a tensor, a tuple of tensors or a dict."
        )
    if options.input_shape is None:
        raise ConfigurationError(
            f"Exporting {type(module).__name__} to ONNX needs an example input, and neither input_shape nor "
            "example_input was given.",
            hint="Pass input_shape=(1, 3, 224, 224) (-1 for a dynamic size) or example_input=tensor.",
        )
    shape_value = options.input_shape
    shapes = [shape_value] if all(isinstance(s, int) for s in shape_value) else list(shape_value)
    dtype = _torch_dtype(options.input_dtype)
    parameter = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
    device = parameter.device if parameter is not None else torch.device("cpu")
    tensors = []
    for shape in shapes:
        order = _input_dim_order(len(shape))
        try:
            sizes = [int(s) if int(s) >= 0 else DEFAULT_SIZES.get(order[a], FALLBACK_SIZE) for a, s in enumerate(shape)]
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"input_shape={shape_value!r} is not a shape or list of shapes.") from exc
        if dtype.is_floating_point or dtype.is_complex:
            generator = torch.Generator().manual_seed(0)
            tensors.append(torch.randn(sizes, dtype=dtype, generator=generator).to(device))
        else:
            tensors.append(torch.zeros(sizes, dtype=dtype, device=device))
    return tuple(tensors), {}


def _torch_dtype(value: Any) -> torch.dtype:
    import torch

    if value is None:
        return torch.float32
    if isinstance(value, torch.dtype):
        return value
    candidate = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(candidate, torch.dtype):
        raise ConfigurationError(
            f"input_dtype={value!r} is not a torch dtype.", hint="Use e.g. 'float32' or torch.float16."
        )
    return candidate


def _dynamic_spec(
    tensor: Any, index: int, *, spatial: bool, dim_orders: Sequence[Sequence[str]] | None = None
) -> dict[int, str] | None:
    """Dynamic axes of one example tensor: batch, plus height/width, time or token when ``spatial``."""
    import torch

    if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
        return None
    suffix = "" if index == 0 else f"_{index}"
    order = _order_of(index, tensor.dim(), dim_orders)
    axes = {order.index("batch"): "batch"} if "batch" in order else {}
    if spatial:
        for axis in _probe_axes(tensor.dim(), order) - set(axes):
            axes[axis] = order[axis] + suffix
    return axes or None


def _output_names(output: Any) -> list[str] | None:
    import torch

    if isinstance(output, torch.Tensor):
        return ["output"]
    if isinstance(output, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in output):
        return [f"output_{i}" for i in range(len(output))]
    if isinstance(output, Mapping) and all(isinstance(o, torch.Tensor) for o in output.values()):
        return [str(k) for k in output]
    return None


def _export_torch(
    module: torch.nn.Module | torch.export.ExportedProgram,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    path: Path,
    dim_orders: Sequence[Sequence[str]] | None = None,
) -> None:
    """``torch.onnx.export`` with dynamic batch and spatial/time dims, falling back to fewer dynamic dims.

    An ``ExportedProgram`` is exported once, with the dynamic dimensions it was exported with.

    Raises:
        ProbeError: the forward fails on the example.
        SourceError: every export attempt fails.
    """
    import torch

    program = isinstance(module, torch.export.ExportedProgram)
    modes = [] if program else [(m, m.training) for m in module.modules()]
    if not program:
        module.eval()
    try:
        with torch.no_grad():
            try:
                output = module.module()(*args, **kwargs) if program else module(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any error of the user's forward is reported with its shapes
                shapes = ", ".join(str(list(t.shape)) for t in (*args, *kwargs.values()) if hasattr(t, "shape"))
                raise ProbeError(
                    f"The forward of {type(module).__name__} failed on the example input ({shapes}): "
                    f"{type(exc).__name__}: {exc}",
                    hint="Pass example_input= or input_shape= with shapes the module accepts.",
                ) from exc
        names = _output_names(output)
        attempts = []
        plans = (("batch and spatial/time", True, True), ("batch", False, True), ("no", False, False))
        if program:
            plans = (("the program's", False, False),)
        for label, spatial, dynamic in plans:
            if not dynamic:
                attempts.append((label, None))
            elif kwargs:
                specs = {
                    k: _dynamic_spec(v, i, spatial=spatial, dim_orders=dim_orders)
                    for i, (k, v) in enumerate(kwargs.items())
                }
                attempts.append((label, specs))
            else:
                attempts.append(
                    (
                        label,
                        tuple(_dynamic_spec(a, i, spatial=spatial, dim_orders=dim_orders) for i, a in enumerate(args)),
                    )
                )
        failures: list[str] = []
        for label, dynamic_shapes in attempts:
            try:
                with warnings.catch_warnings():
                    # several inputs share the "batch" axis name; torch says it keeps one of them
                    warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
                    torch.onnx.export(
                        module,
                        args,
                        str(path),
                        kwargs=kwargs or None,
                        dynamo=True,
                        external_data=True,
                        dynamic_shapes=dynamic_shapes,
                        output_names=names,
                        verbose=False,
                    )
            except torch.onnx.OnnxExporterError as exc:
                failures.append(f"with {label} dynamic dims: {_first_line(exc)}")
                for leftover in path.parent.iterdir():
                    if leftover.is_file():
                        leftover.unlink()
                continue
            if failures:
                warnings.warn(
                    f"{type(module).__name__} was exported to ONNX with {label} dynamic dims; "
                    + "; ".join(f"the export {f}" for f in failures),
                    RuntimeWarning,
                    stacklevel=4,
                )
            return
        raise SourceError(
            f"torch.onnx.export failed for {type(module).__name__}: " + "; ".join(failures),
            hint="Make the module exportable with torch.export (see the PyTorch exportdb), or pick another "
            "artifact_format.",
        )
    finally:
        for submodule, training in modes:
            submodule.train(training)


def _example_shapes(graph: _Graph, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The example's shapes by graph input name (positionally for args, by name for kwargs)."""
    names = [v.name for v in graph.inputs]
    if kwargs:
        return {k: tuple(v.shape) for k, v in kwargs.items() if k in names and hasattr(v, "shape")}
    tensors = [a for a in args if hasattr(a, "shape")]
    if len(tensors) != len(names):
        return {}
    return {name: tuple(int(s) for s in t.shape) for name, t in zip(names, tensors, strict=True)}


__all__ = ["can_describe", "describe", "describe_static", "describe_torch_module", "load_artifact", "run_artifact"]
