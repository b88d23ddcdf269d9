"""Write a PyTorch model's artifact: safetensors, torch.save, TorchScript or torch.export (.pt2)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file, save_model
from torch.jit.frontend import FrontendError

from mlm_export import embedded
from mlm_export.adapters.torch.boundary import _compiling, _first_line, _quiet_torch
from mlm_export.adapters.torch.formats import _FORMATS
from mlm_export.adapters.torch.inputs import _base_shapes, _call_structure, _forward_parameters
from mlm_export.adapters.torch.rebuild import _listing
from mlm_export.adapters.torch.runner import _eval_mode, _Runner, _single_device
from mlm_export.adapters.torch.safetensors_writer import EarlyWrite, header, write_hashed
from mlm_export.adapters.torch.sources import _Loaded
from mlm_export.description import Artifact, ModelDescription
from mlm_export.errors import (
    ConfigurationError,
    ProbeError,
)
from mlm_export.files import artifact_name, write_error, write_failed_for_space
from mlm_export.hashing import FileDigest, remember
from mlm_export.probing import ProbeResult
from mlm_export.publishing import ArtifactWriter, artifact_directory

if TYPE_CHECKING:
    from mlm_export.adapters import ExportOptions


def _check_combination(loaded: _Loaded, fmt: str | None) -> None:
    """Refuse, before any work, an artifact format the source cannot be written in."""
    if loaded.kind == "torchscript" and fmt == "torch.export":
        raise ConfigurationError(
            "artifact_format='torch.export' cannot export a TorchScript module.",
            hint="Use 'torchscript', 'safetensors' or 'torch.save', or export the original nn.Module.",
        )
    if loaded.kind == "exported" and fmt == "torchscript":
        raise ConfigurationError(
            "artifact_format='torchscript' cannot script an ExportedProgram.",
            hint="Use 'torch.export', 'safetensors' or 'torch.save'.",
        )


def _default_format(loaded: _Loaded) -> str:
    return {"torchscript": "torchscript", "exported": "torch.export"}.get(loaded.kind, "safetensors")


def plan_artifact(
    loaded: _Loaded,
    module: Any,
    runner: _Runner,
    result: ProbeResult,
    options: ExportOptions,
    fmt: str | None,
    description: ModelDescription,
    early: EarlyWrite | None = None,
) -> tuple[Artifact, list[str], ArtifactWriter]:
    """The artifact an in-memory model becomes, the notes of compiling it, and the writer of its file.

    Compiling (TorchScript, torch.export) happens here, since its notes belong to the description; only
    serializing is left to the writer. ``early``: the safetensors file :func:`start_early` began writing.
    """
    fmt = fmt or _default_format(loaded)
    info = _FORMATS[fmt]
    directory = artifact_directory(options.artifact.artifact_dir)
    name = artifact_name(loaded.name, info.suffix)
    notes: list[str] = []
    if fmt == "safetensors":
        save, dropped = _safetensors_saver(module, options, description, early)
        if dropped:
            notes.append(f"Non-tensor state_dict entries {_listing(dropped, 4)} are not in the safetensors file.")
    elif fmt == "torch.save":
        tensors, _dropped = _plain_state_dict(module, keep_objects=True)
        save = lambda path: torch.save(tensors, path)  # noqa: E731
    elif fmt == "torchscript":
        scripted, notes = _to_torchscript(loaded, module, runner, result)
        save = lambda path: torch.jit.save(scripted, str(path))  # noqa: E731
    else:
        program, notes = _to_exported(loaded, module, runner, result)
        extra = (
            {embedded.PT2_EXTRA_FILE: _embedded_text(options, description)} if options.artifact.embed_metadata else None
        )
        save = lambda path: torch.export.save(program, str(path), extra_files=extra)  # noqa: E731
    artifact = Artifact(
        key="model",
        roles=info.roles,
        path=str(directory / name),
        artifact_type=info.artifact_type,
        media_type=info.media_type,
        title=f"{loaded.name} {info.title}",
        compile_method=info.compile_method,
    )
    return artifact, notes, ArtifactWriter(directory, (name,), lambda stage: _write(save, stage / name, fmt))


def _embedded_text(options: ExportOptions, description: ModelDescription) -> str:
    """The JSON embedded in the artifact (:func:`mlm_export.embedded.payload`)."""
    payload = embedded.payload(options.artifact.metadata, name=description.name, architecture=description.architecture)
    return embedded.encode(payload)


def start_early(loaded: _Loaded, module: Any, options: ExportOptions, fmt: str | None) -> EarlyWrite | None:
    """Begin writing (and hashing) the safetensors file before the dry-run, when its bytes cannot depend on it.

    That is: the artifact is safetensors without embedded metadata (the description is not in the file), every
    state tensor is a plain CPU tensor of a dtype :mod:`.safetensors_writer` knows, and a staging directory is at
    hand. :meth:`EarlyWrite.take` keeps the file only if the dry-run changed no tensor.
    """
    if options.scratch is None or options.artifact.embed_metadata or (loaded.artifact is not None and fmt is None):
        return None
    if (fmt or _default_format(loaded)) != "safetensors":
        return None
    state = module.state_dict()
    if not all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in state.values()):
        return None
    try:
        from safetensors.torch import _remove_duplicate_names
    except ImportError:
        return None
    metadata = {"format": "pt"}
    tensors = dict(state)
    for kept, removed in _remove_duplicate_names(tensors).items():  # as save_model does
        for name in removed:
            metadata.setdefault(name, kept)
            del tensors[name]
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if header(tensors, metadata) is None:
        return None
    try:
        return EarlyWrite(state, tensors, options.scratch(), metadata)
    except RuntimeError:  # inference tensors: no version counter tells whether the dry-run changed them
        return None


def _safetensors_saver(
    module: Any, options: ExportOptions, description: ModelDescription, early: EarlyWrite | None = None
) -> tuple[Callable[[Path], FileDigest | None], list[str]]:
    """What ``safetensors.torch.save_model`` writes (tied weights stored once), hashed while written.

    A CPU copy for other devices or extra state. The saver returns the file's digest, or None when it fell back to
    ``save_model``/``save_file`` (a dtype :mod:`.safetensors_writer` does not know): then the file is hashed.
    """
    metadata = {"format": "pt"}
    if options.artifact.embed_metadata:
        metadata[embedded.KEY] = _embedded_text(options, description)
        metadata[embedded.DESCRIPTION_KEY] = embedded.encode(description.to_dict())
    state = module.state_dict()
    plain = all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in state.values())
    if plain:
        return lambda path: _save_model(module, path, dict(metadata), early), []
    tensors, dropped = _plain_state_dict(module)
    return lambda path: _save_tensors(tensors, path, metadata), dropped


def _save_model(module: Any, path: Path, metadata: dict[str, str], early: EarlyWrite | None) -> FileDigest | None:
    """``safetensors.torch.save_model(module, path, metadata)``, written by :func:`write_hashed` when it can.

    The file ``early`` wrote, when it is still the module's state.
    """
    try:
        from safetensors.torch import _remove_duplicate_names
    except ImportError:  # a safetensors without it: its own save_model
        return save_model(module, str(path), metadata=metadata)
    state = module.state_dict()
    if early is not None:
        written = early.take(state, {**metadata, **_duplicates(state)}, path)
        if written is not None:
            return written
    for kept, removed in _remove_duplicate_names(state).items():  # as save_model does
        for name in removed:
            metadata.setdefault(name, kept)
            del state[name]
    return _save_tensors({k: v.contiguous() for k, v in state.items()}, path, metadata)


def _duplicates(state: dict[str, Any]) -> dict[str, str]:
    """The metadata ``save_model`` adds for tied weights: each name stored once -> the name it is stored under."""
    from safetensors.torch import _remove_duplicate_names

    return {name: kept for kept, removed in _remove_duplicate_names(dict(state)).items() for name in removed}


def _save_tensors(tensors: dict[str, Any], path: Path, metadata: dict[str, str]) -> FileDigest | None:
    """:func:`write_hashed` (its digest), or ``save_file`` for what it leaves to safetensors (None: not hashed)."""
    digest = write_hashed(tensors, path, metadata)
    if digest is None:
        save_file(tensors, str(path), metadata=metadata)
    return digest


def _write(save: Callable[[Path], object], path: Path, fmt: str) -> None:
    """Serialize into the staging directory; write failures (full disk...) become OutputError naming the file.

    A saver that hashed the file while writing it returns its digest: :func:`mlm_export.hashing.remember` keeps it
    for ``export_item``, which then does not read the file again.
    """
    try:
        with _quiet_torch():
            digest = save(path)
        if isinstance(digest, FileDigest):
            remember(digest)
    except (OSError, RuntimeError, SafetensorError, TypeError, ValueError, AttributeError, NotImplementedError) as exc:
        if isinstance(exc, OSError) or write_failed_for_space(exc, path):
            raise write_error(path, exc) from exc
        raise ProbeError(
            f"Writing the {fmt} artifact failed: {_first_line(exc)}",
            hint="Choose another artifact_format (e.g. 'safetensors'), or fix the model so that it serializes.",
        ) from exc


def _plain_state_dict(module: Any, *, keep_objects: bool = False) -> tuple[dict[str, Any], list[str]]:
    """CPU, contiguous tensors; tensors sharing memory (tied weights) are cloned so safetensors accepts them."""
    tensors: dict[str, Any] = {}
    dropped: list[str] = []
    seen: set[tuple[int, int]] = set()
    for key, value in module.state_dict().items():
        if not isinstance(value, torch.Tensor):
            if keep_objects:
                tensors[key] = value
            else:
                dropped.append(key)
            continue
        tensor = value.detach().to("cpu").contiguous()
        storage = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if tensor.numel() else (0, id(tensor))
        if tensor.numel() and any(ptr == storage[0] for ptr, _ in seen):
            tensor = tensor.clone()
        else:
            seen.add(storage)
        tensors[key] = tensor
    return tensors, dropped


def _export_inputs(runner: _Runner, result: ProbeResult, device: Any) -> list[Any]:
    """Inputs for tracing/exporting: base shapes, a dynamic batch of 1 raised to 2 (export specializes 0/1)."""
    shapes = []
    for shape, base in zip(result.input_shapes, _base_shapes(runner.inputs), strict=True):
        shapes.append(tuple(2 if (s == -1 and b == 1) else b for s, b in zip(shape, base, strict=True)))
    return runner.make_inputs(shapes, device=device)


def _to_torchscript(loaded: _Loaded, module: Any, runner: _Runner, result: ProbeResult) -> tuple[Any, list[str]]:
    if loaded.kind == "torchscript":
        return module, []
    notes: list[str] = []
    device = _single_device(module) or torch.device("cpu")
    with _quiet_torch(), _eval_mode(module):
        try:
            scripted = torch.jit.script(module)
        except (RuntimeError, TypeError, OSError, AttributeError, NotImplementedError, FrontendError) as exc:
            tensors = _export_inputs(runner, result, device)
            args, kwargs = _call_structure(runner.inputs, tensors)
            shapes = ", ".join(str(list(t.shape)) for t in tensors)
            with _compiling(f"torch.jit.script ({_first_line(exc, 120)}) and then torch.jit.trace"), torch.no_grad():
                scripted = torch.jit.trace(
                    module, example_inputs=args or None, example_kwarg_inputs=kwargs or None,
                    strict=False, check_trace=False,
                )  # fmt: skip
            notes.append(
                f"torch.jit.script failed ({_first_line(exc, 120)}); the TorchScript artifact was traced with inputs "
                f"of shape {shapes}, so data-dependent control flow is fixed to that run."
            )
            warnings.warn(notes[-1], UserWarning, stacklevel=4)
        scripted.eval()
    return scripted, notes


def _to_exported(loaded: _Loaded, module: Any, runner: _Runner, result: ProbeResult) -> tuple[Any, list[str]]:
    if loaded.kind == "exported":
        return loaded.program, []
    notes: list[str] = []
    device = _single_device(module) or torch.device("cpu")
    tensors = _export_inputs(runner, result, device)
    args, kwargs = _call_structure(runner.inputs, tensors)
    dynamic = _dynamic_shapes(runner, result)
    with _quiet_torch(), _eval_mode(module):
        program = None
        if dynamic is not None:
            try:
                program = torch.export.export(module, args, kwargs or None, dynamic_shapes=dynamic)
            except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
                notes.append(
                    f"torch.export could not keep the dynamic dimensions ({_first_line(exc, 160)}); "
                    "the .pt2 artifact was exported with static shapes."
                )
                warnings.warn(notes[-1], UserWarning, stacklevel=4)
        if program is None:
            with _compiling("torch.export.export"):
                program = torch.export.export(module, args, kwargs or None)
    specialized = _specialized_inputs(program, result)
    if specialized:
        notes.append(
            "In the .pt2 artifact these dynamic dimensions were specialized by torch.export: "
            + ", ".join(specialized)
            + "."
        )
    return program, notes


def _dynamic_shapes(runner: _Runner, result: ProbeResult) -> Any:
    specs = []
    for shape in result.input_shapes:
        specs.append({axis: torch.export.Dim.AUTO for axis, size in enumerate(shape) if size == -1} or None)
    if not any(specs):
        return None
    plans = runner.inputs.plans
    if runner.inputs.dict_argument:
        return ({p.name: s for p, s in zip(plans, specs, strict=True)},)
    if any(p.keyword is not None for p in plans):
        positional = _forward_parameters(runner.module)
        names = [p.name for p in positional]
        mapping: dict[str, Any] = {}
        position = 0
        for plan, spec in zip(plans, specs, strict=True):
            if plan.keyword is None:
                if position >= len(names):
                    return None
                mapping[names[position]] = spec
                position += 1
            else:
                mapping[plan.keyword] = spec
        return mapping
    return tuple(specs)


def _specialized_inputs(program: Any, result: ProbeResult) -> list[str]:
    placeholders = [
        node for node in program.graph.nodes
        if node.op == "placeholder" and node.name in set(program.graph_signature.user_inputs)
    ]  # fmt: skip
    found = []
    for node, shape in zip(placeholders, result.input_shapes, strict=False):
        value = node.meta.get("val")
        if value is None:
            continue
        for axis, (size, dim) in enumerate(zip(shape, value.shape, strict=False)):
            if size == -1 and isinstance(dim, int):
                found.append(f"{node.name}[{axis}]={dim}")
    return found
