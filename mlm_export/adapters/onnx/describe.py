"""Describe an ONNX source: registry entry points, and the ModelDescription built from the graph and dry-run."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from mlm_export import embedded
from mlm_export.adapters import ExportOptions
from mlm_export.adapters.onnx.embedded import _metadata_payload, _read_embedded, _set_metadata
from mlm_export.adapters.onnx.files import (
    INLINE_LIMIT,
    _artifact_dir,
    _copy,
    _copy_proto,
    _relocate,
    _save_proto,
    _slug,
    measured_from_scratch,
    scratch_directory,
)
from mlm_export.adapters.onnx.graph import _all_tensors, _Graph, _input_dim_order, _load_graph, _Value
from mlm_export.adapters.onnx.runtime import _dry_run, _Measured, _requested_shapes
from mlm_export.description import (
    Artifact,
    InputSpec,
    ModelDescription,
    OutputSpec,
)
from mlm_export.errors import (
    ArtifactNotFoundError,
    UnsupportedSourceError,
)
from mlm_export.probing import (
    LAYOUT_BY_RANK,
    output_dim_order,
)
from mlm_export.publishing import Measured, publish_now
from mlm_export.tensors import is_embedding_name

FRAMEWORK = "ONNX"

ARTIFACT_TYPE = "onnx"

MEDIA_TYPE = "application/octet-stream; framework=onnx"

DATA_MEDIA_TYPE = "application/octet-stream"

MODEL_KEY = "model"

DATA_KEY = "model-external-data"

MODEL_ROLES = ("mlm:model", "mlm:compiled")

DATA_ROLES = ("mlm:weights", "weights")

_GENERIC_GRAPH_NAMES = {"", "main_graph", "torch_jit", "torch-jit-export", "graph", "model", "tf2onnx", "test"}

_EXPRESSION_WORDS = {"floor", "ceil", "max", "min", "mod", "floordiv", "ceildiv", "abs", "sym_max", "sym_min"}

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def can_describe(source: Any) -> bool:
    """Whether ``source`` is an ``onnx.ModelProto``, a ``.onnx`` path or a torch module (exported to ONNX).

    .. versionadded:: 0.1
    """
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower() == ".onnx"
    return _is_model_proto(source) or _is_torch_module(source)


def measure(source: Any, options: ExportOptions) -> Measured:
    """Measure an ONNX model: read the graph statically, then dry-run it with onnxruntime.

    A file is published as it is (no writer). An in-memory model, a PyTorch module, or a file whose copy gets
    embedded metadata is written to a scratch directory to be measured (onnxruntime reads files), and the returned
    writer publishes it.

    Args:
        source: an ``onnx.ModelProto``, a path to a ``.onnx`` file, or a ``torch.nn.Module`` to export to ONNX.
        options: what the caller told ``export_item`` (artifact directory, shapes, device, embedding...).

    Returns:
        The description (its ``mlm:model`` artifact is the ``.onnx`` file, one more artifact per external-data
        file) and the writer of the files to publish, if any.

    Raises:
        ArtifactNotFoundError: the file or one of its external-data files does not exist.
        ArtifactLoadError: the file is not an ONNX model, is truncated or fails ``onnx.checker.check_model``.
        UnsupportedSourceError: ``source`` is none of the above.

    .. versionadded:: 0.2
    """
    if _is_model_proto(source):
        return _measure_proto(source, options)
    if _is_torch_module(source):
        from mlm_export.adapters.onnx.from_torch import measure_torch_module  # torch is optional for ONNX

        return measure_torch_module(source, options)
    if isinstance(source, (str, os.PathLike)):
        return _measure_path(Path(os.path.abspath(source)), options)
    raise UnsupportedSourceError(
        f"The ONNX adapter cannot describe a {type(source).__module__}.{type(source).__qualname__}.",
        hint="Pass an onnx.ModelProto, a path to a .onnx file or a torch.nn.Module.",
    )


def describe(source: Any, options: ExportOptions) -> ModelDescription:
    """:func:`measure`, then write and publish the files at once (``export_item`` validates in between).

    .. versionadded:: 0.1
    """
    return publish_now(
        lambda staging: measure(source, options.updated(scratch=lambda: staging.path)),
        _artifact_dir(options),
        overwrite=options.artifact.overwrite,
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


def _is_model_proto(source: Any) -> bool:
    onnx_module = sys.modules.get("onnx")
    return onnx_module is not None and isinstance(source, onnx_module.ModelProto)


def _is_torch_module(source: Any) -> bool:
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(source, torch_module.nn.Module)


def _measure_path(path: Path, options: ExportOptions) -> Measured:
    graph = _load_graph(path)
    name = _default_name(graph, path.stem)
    architecture = _default_architecture(graph)
    described = _describe_graph(graph, options, name=name, architecture=architecture)
    if not options.artifact.embed_metadata:
        return Measured(described)
    payload = _metadata_payload(options, described.name, described.architecture)
    described = described.replace(name=payload["name"], embedded=embedded.caller_values(payload))
    target = _artifact_dir(options)
    same_dir = target.exists() and target.resolve() == path.parent.resolve()
    filename = f"{_slug(payload['name'])}.onnx"
    if (target / filename).resolve() == path.resolve():
        filename = f"{_slug(payload['name'])}-mlm.onnx"
    copy = _copy_proto(graph.proto)
    _set_metadata(copy, payload)
    with scratch_directory(options) as scratch:
        _save_proto(copy, scratch / filename)
        moved = {str(graph.path): str(scratch / filename)}
        if not same_dir:
            for external in graph.externals:
                _copy(external.path, scratch / external.location)
                moved[str(external.path)] = str(scratch / external.location)
        return measured_from_scratch(_relocate(described, moved), scratch, options)


def _measure_proto(proto: onnx.ModelProto, options: ExportOptions) -> Measured:
    for tensor in _all_tensors(proto):
        if uses_external_data(tensor) and not tensor.HasField("raw_data"):
            raise ArtifactNotFoundError(
                f"The in-memory ModelProto refers to external data '{ExternalDataInfo(tensor).location}' "
                f"(tensor {tensor.name!r}), which cannot be found without the model's file path.",
                hint="Pass the path of the .onnx file instead, or load it with onnx.load(path) so the weights "
                "are in memory.",
            )
    metadata = dict(options.artifact.metadata or {})
    stored = _read_embedded(proto, "the in-memory ModelProto")
    graph_name = proto.graph.name
    name = str(
        metadata.get("name") or (stored or {}).get("name") or (graph_name if _meaningful(graph_name) else "onnx-model")
    )
    architecture = str((stored or {}).get("architecture") or (graph_name if _meaningful(graph_name) else "unknown"))
    copy = proto
    payload = None
    if options.artifact.embed_metadata or proto.ByteSize() > INLINE_LIMIT:
        copy = _copy_proto(proto)
    if options.artifact.embed_metadata:
        payload = _metadata_payload(options, name, architecture)
        _set_metadata(copy, payload)
    with scratch_directory(options) as scratch:
        path = scratch / f"{_slug(name)}.onnx"
        _save_proto(copy, path, data_location=f"{path.name}.data")
        graph = _load_graph(path)  # its embedded metadata, if any, is returned by _describe_graph
        described = _describe_graph(graph, options, name=name, architecture=architecture)
        return measured_from_scratch(described, scratch, options)


def _default_name(graph: _Graph, fallback: str) -> str:
    stored = graph.embedded or {}
    return str(stored.get("name") or fallback)


def _default_architecture(graph: _Graph) -> str:
    stored = graph.embedded or {}
    if stored.get("architecture"):
        return str(stored["architecture"])
    return graph.graph_name if _meaningful(graph.graph_name) else "unknown"


def _meaningful(graph_name: str) -> bool:
    """Whether an ONNX graph name says something (not ``main_graph`` or a hex id)."""
    return (
        graph_name.lower() not in _GENERIC_GRAPH_NAMES
        and re.fullmatch(r"[0-9a-fA-F-]{16,}", graph_name) is None
        and re.match(r"[A-Za-z]", graph_name) is not None
    )


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
        described = described.replace(embedded=embedded.caller_values(graph.embedded))
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
                    if axis in measured.stated[index] and axis not in measured.probed[index]:
                        size = base  # a size the caller gave, not probed (probe_dynamic=False, or no probe group)
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
            order = output_dim_order(shape, layouts, input_orders, embedding=is_embedding_name(value.name))
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
