"""Export a PyTorch module or ExportedProgram to ONNX with ``torch.onnx.export`` and describe the file."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mlm_export.adapters import ExportOptions
from mlm_export.adapters.onnx.boundary import _first_line
from mlm_export.adapters.onnx.describe import _describe_graph
from mlm_export.adapters.onnx.embedded import _embed_in_file, _metadata_payload
from mlm_export.adapters.onnx.files import (
    _slug,
    measured_from_scratch,
    scratch_directory,
)
from mlm_export.adapters.onnx.graph import _Graph, _input_dim_order, _load_graph, _order_of, _probe_axes
from mlm_export.adapters.onnx.runtime import FALLBACK_SIZE
from mlm_export.errors import (
    ConfigurationError,
    ProbeError,
    SourceError,
)
from mlm_export.policy import FORWARD_ERRORS
from mlm_export.probing import (
    DEFAULT_SIZES,
)
from mlm_export.publishing import Measured


def measure_torch_module(module: torch.nn.Module | torch.export.ExportedProgram, options: ExportOptions) -> Measured:
    """Export ``module`` with ``torch.onnx.export`` to a scratch ``<slug>.onnx`` and measure that file.

    The file is published as ``<artifact_dir>/<slug>.onnx`` (plus ``.onnx.data``) by the returned writer.

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
        OutputExistsError: the ``.onnx`` file exists in ``artifact_dir`` and ``overwrite`` is False.

    .. versionadded:: 0.2
    """
    args, kwargs = _torch_example(module, options)
    metadata = dict(options.artifact.metadata or {})
    architecture = str(metadata.get("architecture") or type(module).__name__)
    name = str(metadata.get("name") or architecture)
    payload = _metadata_payload(options, name, architecture) if options.artifact.embed_metadata else None
    with scratch_directory(options) as scratch:
        onnx_path = scratch / f"{_slug(name)}.onnx"
        _export_torch(module, args, kwargs, onnx_path, options.probe.input_dim_orders)
        if payload is not None:
            _embed_in_file(onnx_path, payload)
        graph = _load_graph(onnx_path)
        requested = _example_shapes(graph, args, kwargs)
        plain = options.updated(example_input=None, input_shape=None)
        described = _describe_graph(
            graph, plain, name=name, architecture=architecture, requested=requested, examples=True
        )
        return measured_from_scratch(described, scratch, options)


def _torch_example(module: torch.nn.Module, options: ExportOptions) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The export example as (args, kwargs), from ``example_input``, ``input_shape`` or ``example_input_array``.

    Raises:
        ConfigurationError: there is no example, or ``input_shape``/``input_dtype`` is malformed.
    """
    example = options.probe.example_input
    if example is None and options.probe.input_shape is None:
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
    if options.probe.input_shape is None:
        raise ConfigurationError(
            f"Exporting {type(module).__name__} to ONNX needs an example input, and neither input_shape nor "
            "example_input was given.",
            hint="Pass input_shape=(1, 3, 224, 224) (-1 for a dynamic size) or example_input=tensor.",
        )
    shape_value = options.probe.input_shape
    shapes = [shape_value] if all(isinstance(s, int) for s in shape_value) else list(shape_value)
    dtype = _torch_dtype(options.probe.input_dtype)
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
    program = isinstance(module, torch.export.ExportedProgram)
    modes = [] if program else [(m, m.training) for m in module.modules()]
    if not program:
        module.eval()
    try:
        names = _output_names(_example_forward(module, args, kwargs))
        failures: list[str] = []
        for label, dynamic_shapes in _export_attempts(program, args, kwargs, dim_orders):
            failure = _export_once(module, args, kwargs, path, dynamic_shapes, names)
            if failure is not None:
                failures.append(f"with {label} dynamic dims: {failure}")
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


def _example_forward(
    module: torch.nn.Module | torch.export.ExportedProgram, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The module's output on the export example (no grad).

    Raises:
        ProbeError: the forward fails on the example.
    """
    runnable = module.module() if isinstance(module, torch.export.ExportedProgram) else module
    with torch.no_grad():
        try:
            return runnable(*args, **kwargs)
        except FORWARD_ERRORS as exc:
            shapes = ", ".join(str(list(t.shape)) for t in (*args, *kwargs.values()) if hasattr(t, "shape"))
            raise ProbeError(
                f"The forward of {type(module).__name__} failed on the example input ({shapes}): "
                f"{type(exc).__name__}: {exc}",
                hint="Pass example_input= or input_shape= with shapes the module accepts.",
            ) from exc


def _export_once(
    module: torch.nn.Module | torch.export.ExportedProgram,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    path: Path,
    dynamic_shapes: Any,
    names: list[str] | None,
) -> str | None:
    """One ``torch.onnx.export`` attempt: None when it wrote ``path``, else why it failed (its files removed)."""
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
        for leftover in path.parent.iterdir():
            if leftover.is_file():
                leftover.unlink()
        return _first_line(exc)
    return None


def _export_attempts(
    program: bool, args: tuple[Any, ...], kwargs: dict[str, Any], dim_orders: Sequence[Sequence[str]] | None
) -> list[tuple[str, Any]]:
    """(label, dynamic_shapes) to try in turn: batch and spatial/time dynamic, then batch only, then static."""
    if program:
        return [("the program's", None)]
    attempts: list[tuple[str, Any]] = []
    for label, spatial, dynamic in (
        ("batch and spatial/time", True, True),
        ("batch", False, True),
        ("no", False, False),
    ):
        if not dynamic:
            attempts.append((label, None))
        elif kwargs:
            specs = {
                k: _dynamic_spec(v, i, spatial=spatial, dim_orders=dim_orders)
                for i, (k, v) in enumerate(kwargs.items())
            }
            attempts.append((label, specs))
        else:
            specs = tuple(_dynamic_spec(a, i, spatial=spatial, dim_orders=dim_orders) for i, a in enumerate(args))
            attempts.append((label, specs))
    return attempts


def _example_shapes(graph: _Graph, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The example's shapes by graph input name (positionally for args, by name for kwargs)."""
    names = [v.name for v in graph.inputs]
    if kwargs:
        return {k: tuple(v.shape) for k, v in kwargs.items() if k in names and hasattr(v, "shape")}
    tensors = [a for a in args if hasattr(a, "shape")]
    if len(tensors) != len(names):
        return {}
    return {name: tuple(int(s) for s in t.shape) for name, t in zip(names, tensors, strict=True)}
