"""Describe a PyTorch source: registry entry points, parameter counting and the measured ModelDescription."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlm_export.adapters.torch.artifacts import _check_combination, plan_artifact, start_early
from mlm_export.adapters.torch.formats import _check_format
from mlm_export.adapters.torch.inputs import (
    _base_shapes,
    _call_structure,
    _inferred_plans,
    _InputPlan,
    _Inputs,
    _plan_inputs,
    _tensors_of,
    data_type_of,
)
from mlm_export.adapters.torch.meta import TorchProbeBackend
from mlm_export.adapters.torch.rebuild import _listing
from mlm_export.adapters.torch.runner import (
    _accelerator,
    _dry_run_state,
    _flatten,
    _resolve_device,
    _runnable,
    _Runner,
    _single_device,
)
from mlm_export.adapters.torch.sharded import with_parallel_digests
from mlm_export.adapters.torch.sources import _load_source, _Loaded
from mlm_export.description import InputSpec, ModelDescription, OutputSpec
from mlm_export.dryrun import DryRunLimits
from mlm_export.errors import (
    ConfigurationError,
    DryRunLimitError,
    MissingDependencyError,
    ProbeError,
)
from mlm_export.probing import LAYOUT_BY_RANK, ProbeResult, output_dim_order, probe
from mlm_export.publishing import Measured, artifact_directory, publish_now
from mlm_export.tensors import is_embedding_name

if TYPE_CHECKING:
    from mlm_export.adapters import ExportOptions


#: File suffixes this adapter reads.
SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pt2")
#: Index files of sharded checkpoints (see :mod:`.sharded`).
SHARD_INDEX_SUFFIXES: tuple[str, ...] = (".safetensors.index.json", ".bin.index.json")


def can_describe(source: Any) -> bool:
    """Whether ``source`` is a PyTorch model object or a file with a PyTorch suffix (imports torch only if loaded).

    Args:
        source: a model object or a path.

    Returns:
        True for ``nn.Module`` (TorchScript included), ``ExportedProgram`` and the suffixes in :data:`SUFFIXES`.
    """
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower() in SUFFIXES or str(source).lower().endswith(SHARD_INDEX_SUFFIXES)
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    if isinstance(source, torch.nn.Module):
        return True
    export = sys.modules.get("torch.export")
    program_type = getattr(export, "ExportedProgram", None)
    return program_type is not None and isinstance(source, program_type)


def measure(source: Any, options: ExportOptions) -> Measured:
    """Measure a PyTorch model (object or file) with a dry-run; write nothing.

    Args:
        source: an ``nn.Module``, TorchScript module, ``ExportedProgram`` or a path to a PyTorch file.
        options: what the caller passed to ``export_item``.

    Returns:
        The measured description (tasks are left empty unless the model carries them) and, for an in-memory
        model or a requested ``artifact_format``, the writer of the artifact the description names.

    Raises:
        ConfigurationError: an option is invalid or missing (``model_class``, ``input_shape``, ``device``...).
        ArtifactLoadError: the file is truncated, corrupt or does not fit ``model_class``.
        UntrustedPickleError: the file needs arbitrary unpickling and ``trust_pickle`` is False.
        ProbeError: the model's forward failed on the inputs tried.
        OutputExistsError: the artifact's file exists and ``overwrite`` is False.

    .. versionadded:: 0.2
    """
    fmt = _check_format(options.artifact.artifact_format)
    device = _resolve_device(options.load.device)
    loaded = _load_source(source, options)
    if fmt == "onnx":
        return _delegate_onnx(loaded, options)
    return _describe_loaded(loaded, options, device, fmt)


def describe(source: Any, options: ExportOptions) -> ModelDescription:
    """:func:`measure`, then write and publish the artifact at once (``export_item`` validates in between).

    Raises:
        OutputError: the artifact cannot be written; and everything :func:`measure` raises.

    .. versionadded:: 0.1
    """
    directory = artifact_directory(options.artifact.artifact_dir)
    return publish_now(
        lambda staging: measure(source, options.updated(scratch=lambda: staging.path)),
        directory,
        overwrite=options.artifact.overwrite,
    )


@dataclass(frozen=True)
class _Counts:
    total: int | None
    trainable: int | None
    tensor_bytes: int


def _count(loaded: _Loaded) -> _Counts:
    if loaded.kind == "exported":
        program = loaded.program
        signature = program.graph_signature
        params = [program.state_dict[n] for n in signature.parameters if n in program.state_dict]
        tensors = [v for v in program.state_dict.values() if isinstance(v, torch.Tensor)]
        tensors += [v for v in program.constants.values() if isinstance(v, torch.Tensor)]
        total = sum(p.numel() for p in _unique(params))
        trainable = sum(p.numel() for p in _unique(params) if p.requires_grad)
        return _Counts(total, trainable, sum(t.numel() * t.element_size() for t in _unique(tensors)))
    module = loaded.module
    uninitialized = [
        n for n, p in module.named_parameters() if isinstance(p, torch.nn.parameter.UninitializedParameter)
    ]
    if uninitialized:
        raise ConfigurationError(
            f"{loaded.name} has uninitialized (lazy) parameters ({_listing(uninitialized, 4)}): there are no weights "
            "to count or publish yet.",
            hint="Run one forward pass to materialize the lazy layers, then export.",
        )
    params = list(module.parameters())  # parameters() already drops shared (tied) duplicates
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    tensor_bytes = sum(t.numel() * t.element_size() for t in _unique([*params, *module.buffers()]))
    return _Counts(total, trainable, tensor_bytes)


def _unique(tensors: Sequence[Any]) -> list[Any]:
    """Tensors without repeats: the same object, or views of the same memory (tied weights after a reload)."""
    strided = torch.strided
    seen: set[Any] = set()
    result = []
    for tensor in tensors:
        key: Any = id(tensor)
        if tensor.numel() and tensor.layout == strided and tensor.device.type != "meta":
            key = (tensor.device, tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if key not in seen:
            seen.add(key)
            result.append(tensor)
    return result


def _cuda_baseline(module: Any, device: torch.device) -> int:
    """CUDA memory allocated before the dry-run, besides the module's own tensors (0 off CUDA); resets the peak."""
    if device.type != "cuda":
        return 0
    on_device = sum(t.numel() * t.element_size() for t in _tensors_of(module) if t.device == device)
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device) - on_device
    torch.cuda.reset_peak_memory_stats(device)
    return baseline


def _describe_loaded(loaded: _Loaded, options: ExportOptions, device: torch.device, fmt: str | None) -> Measured:
    """Count, dry-run and describe ``loaded``; its artifact is the source file, else the one planned to write."""
    _check_combination(loaded, fmt)
    counts = _count(loaded)
    module, can_eval = _runnable(loaded, device)
    inputs = _plan_inputs(loaded, module, options)
    runner = _Runner(module, inputs, device)

    baseline = _cuda_baseline(module, device)
    early = start_early(loaded, module, options, fmt)  # the weights file, written and hashed beside the dry-run
    try:
        return _describe_run(loaded, options, fmt, (module, can_eval, inputs, runner, counts, baseline), device, early)
    except BaseException:
        if early is not None:
            early.discard()
        raise


def _describe_run(
    loaded: _Loaded, options: ExportOptions, fmt: str | None, run: tuple, device: torch.device, early: Any
) -> Measured:
    """The dry-run and the description of :func:`_describe_loaded`."""
    module, can_eval, inputs, runner, counts, baseline = run
    notes = list(loaded.notes)
    result = _probe_loaded(loaded, module, runner, inputs, counts, options, device, can_eval=can_eval)
    notes.extend(inputs.notes)
    notes.extend(result.notes)

    memory = counts.tensor_bytes
    if runner.peak_bytes is not None:
        memory = max(memory, runner.peak_bytes - baseline)

    input_specs = _input_specs(inputs, result)
    output_specs, output_notes = _output_specs(inputs, result, headless=_headless(loaded.module))
    notes.extend(output_notes)

    description = ModelDescription(
        name=loaded.name,
        architecture=loaded.architecture,
        tasks=(),
        inputs=input_specs,
        outputs=output_specs,
        framework="PyTorch",
        framework_version=str(torch.__version__),
        total_parameters=counts.total,
        trainable_parameters=counts.trainable,
        memory_size=int(memory),
        hyperparameters=loaded.hyperparameters,
        notes=tuple(notes),
        embedded=loaded.embedded,
        **_accelerator(loaded),
    )
    if loaded.artifact is not None and fmt is None:
        sources = [loaded.artifact, *loaded.more_artifacts]  # a sharded checkpoint: every shard and the index
        return Measured(description.replace(artifacts=tuple(with_parallel_digests(sources) if loaded.more_artifacts
                                                             else sources)))  # fmt: skip
    artifact, write_notes, writer = plan_artifact(loaded, module, runner, result, options, fmt, description, early)
    return Measured(description.replace(artifacts=(artifact,), notes=(*notes, *write_notes)), writer)


def _probe_loaded(
    loaded: _Loaded,
    module: Any,
    runner: _Runner,
    inputs: _Inputs,
    counts: _Counts,
    options: ExportOptions,
    device: torch.device,
    *,
    can_eval: bool,
) -> ProbeResult:
    """Dry-run ``module`` through :func:`~mlm_export.probing.probe` (eval mode, RNG state restored, capped).

    Raises:
        DryRunLimitError: the dry-run ran past its memory or time cap.
        ProbeError: no probe shape runs; for inferred inputs the message says how they were inferred.
    """
    fork_devices = [device.index] if device.type == "cuda" else []
    backend = TorchProbeBackend(runner, counts.tensor_bytes, DryRunLimits.of(options), _flatten)
    with _dry_run_state(module, device, switch_mode=can_eval), torch.random.fork_rng(devices=fork_devices):
        try:
            with backend.timed(f"of {loaded.name}"):
                return probe(
                    backend,
                    inputs.probe_inputs,
                    probe_dynamic=options.probe.probe_dynamic,
                    base_shapes=inputs.base_shapes,
                )
        except DryRunLimitError:
            raise
        except ProbeError as exc:
            if inputs.origin == "inferred":
                raise ProbeError(
                    f"{exc.message} ({' '.join(inputs.notes)})",
                    hint="Pass input_shape= or example_input= with shapes the model accepts.",
                ) from (exc.__cause__ or exc)
            raise


def _input_specs(inputs: _Inputs, result: ProbeResult) -> tuple[InputSpec, ...]:
    specs = []
    for index, (probe_input, shape, order) in enumerate(
        zip(inputs.probe_inputs, result.input_shapes, result.input_dim_orders, strict=True)
    ):
        specs.append(
            InputSpec(
                name=probe_input.name,
                shape=shape,
                dim_order=order,
                data_type=probe_input.data_type,
                description=_input_description(inputs.plans[index], result.input_notes.get(index)),
            )
        )
    return tuple(specs)


def _input_description(plan: _InputPlan, probe_note: str | None) -> str | None:
    parts = []
    if data_type_of(plan.dtype) == "other":
        parts.append(f"The tensor's dtype is {plan.dtype} (MLM has no such data type).")
    if probe_note:
        parts.append(probe_note[:1].upper() + probe_note[1:])
    return " ".join(parts) or None


#: Attributes that hold a model's classifier head (timm, torchvision, torchgeo), by convention.
_HEAD_ATTRIBUTES = ("head", "fc", "classifier", "heads", "last_linear")


def _headless(module: Any) -> bool:
    """Whether ``module`` is a feature extractor: ``num_classes == 0`` (timm) or its head replaced by Identity."""
    if module is None or isinstance(module, torch.jit.ScriptModule):
        return False
    if getattr(module, "num_classes", None) == 0:
        return True
    heads = [getattr(module, a, None) for a in _HEAD_ATTRIBUTES]
    return any(isinstance(h, torch.nn.Identity) for h in heads)


def _output_specs(
    inputs: _Inputs, result: ProbeResult, *, headless: bool = False
) -> tuple[tuple[OutputSpec, ...], list[str]]:
    """Output specs; an output named like an embedding, or the only one of a ``headless`` model, is an embedding."""
    layouts = [p.layout or LAYOUT_BY_RANK.get(len(p.shape)) for p in inputs.probe_inputs]
    specs: list[OutputSpec] = []
    notes: list[str] = []
    for out in result.outputs:
        if out.kind != "tensor":
            notes.append(f"Output {out.name!r} is {out.description or 'not a tensor'}; it is left out of mlm:output.")
            continue
        description = out.description
        if out.non_finite:
            extra = "The dry-run produced NaN or inf values in this output."
            description = f"{description} {extra}" if description else extra
            notes.append(f"The dry-run produced NaN or inf values in output {out.name!r}.")
        embedding = is_embedding_name(out.name) or (headless and len(result.outputs) == 1)
        specs.append(
            OutputSpec(
                name=out.name,
                shape=out.shape,
                dim_order=("value",)
                if out.scalar
                else output_dim_order(out.shape, layouts, result.input_dim_orders, embedding=embedding),
                data_type=out.data_type,
                description=description,
            )
        )
    if not specs:
        raise ProbeError(
            "The model returned no tensor output (only " + ", ".join(o.name for o in result.outputs) + ").",
            hint="Return a tensor, or a tuple/list/dict of tensors.",
        )
    return tuple(specs), notes


def _delegate_onnx(loaded: _Loaded, options: ExportOptions) -> Measured:
    try:
        onnx_adapter = importlib.import_module("mlm_export.adapters.onnx")
    except ImportError as exc:
        raise MissingDependencyError(
            f"artifact_format='onnx' needs the ONNX adapter and its dependencies ({exc}).",
            hint="pip install 'mlm-export[onnx]'",
        ) from exc
    delegate = getattr(onnx_adapter, "measure_torch_module", None)
    if delegate is None:
        raise ConfigurationError(
            "artifact_format='onnx' is not available: mlm_export.adapters.onnx has no measure_torch_module().",
            hint="Use artifact_format='safetensors', 'torch.save', 'torchscript' or 'torch.export'.",
        )
    module = loaded.module if loaded.kind != "exported" else loaded.program
    changes: dict[str, Any] = {"metadata": {"name": loaded.name, "architecture": loaded.architecture,
                                            **dict(options.artifact.metadata or {})}}  # fmt: skip
    runnable = module if loaded.kind != "exported" else module.module()
    if loaded.kind != "exported" and options.probe.input_dim_orders is None:
        planned = _plan_inputs(loaded, runnable, options)
        changes["input_dim_orders"] = tuple(p.resolved_dim_order() for p in planned.probe_inputs)
    if options.probe.example_input is None and options.probe.input_shape is None:
        inputs = _inferred_plans(loaded, runnable)
        device = _single_device(runnable) or torch.device("cpu")
        tensors = _Runner(runnable, inputs, device).make_inputs(_base_shapes(inputs), device=device)
        args, kwargs = _call_structure(inputs, tensors)
        changes["example_input"] = kwargs if kwargs and not args else (args[0] if len(args) == 1 else args)
    return delegate(module, options.updated(**changes))
