"""PyTorch adapter: measure an ``nn.Module``, TorchScript module, ``ExportedProgram`` or PyTorch file.

What ends up in the :class:`~mlm_export.description.ModelDescription` is measured, never guessed from names:
parameters are counted on the module, input and output shapes come from a dry-run through
:func:`mlm_export.probing.probe` (which also finds the dynamic dimensions), and data types are the tensors' own.

Files are opened safely: ``torch.load(weights_only=True)`` for checkpoints (a pickled ``nn.Module`` needs
``trust_pickle=True``), ``safetensors`` headers without loading tensors, ``torch.jit.load`` for TorchScript
archives and ``torch.export.load`` for ``.pt2``. A file source is published as it is; an in-memory module's
weights are written to ``artifact_dir`` (temp file + ``os.replace``).

torch is imported inside the functions only, so that ``import mlm_export`` never imports it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import inspect
import io
import json
import math
import os
import pickle
import pickletools
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlm_export.description import Artifact, InputSpec, ModelDescription, OutputSpec, slugify
from mlm_export.errors import (
    ArtifactLoadError,
    ArtifactNotFoundError,
    ConfigurationError,
    MissingDependencyError,
    MLMExportError,
    OutputError,
    OutputExistsError,
    ProbeError,
    UntrustedPickleError,
)
from mlm_export.probing import LAYOUT_BY_RANK, LAYOUTS, MeasuredTensor, ProbeInput, ProbeResult, output_dim_order, probe

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mlm_export.adapters import ExportOptions

#: File suffixes this adapter reads.
SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pt2")
#: Values of ``artifact_format`` for an in-memory module.
ARTIFACT_FORMATS: tuple[str, ...] = ("safetensors", "torch.save", "torchscript", "torch.export", "onnx")

MEDIA_PYTORCH = "application/octet-stream; framework=pytorch"
MEDIA_SAFETENSORS = "application/octet-stream; framework=pytorch; application=safetensors"
MEDIA_COMPILED = "application/octet-stream; framework=pytorch; profile=compiled"
ROLES_WEIGHTS: tuple[str, ...] = ("mlm:model", "mlm:weights", "weights")
ROLES_CHECKPOINT: tuple[str, ...] = ("mlm:model", "mlm:checkpoint", "checkpoint")
ROLES_COMPILED: tuple[str, ...] = ("mlm:model", "mlm:compiled")


@dataclass(frozen=True)
class _Format:
    suffix: str
    artifact_type: str
    media_type: str
    roles: tuple[str, ...]
    title: str
    compile_method: str | None = None


_FORMATS: dict[str, _Format] = {
    "safetensors": _Format(".safetensors", "safetensors.torch.save_file", MEDIA_SAFETENSORS, ROLES_WEIGHTS,
                           "weights (safetensors)"),
    "torch.save": _Format(".pt", "torch.save", MEDIA_PYTORCH, ROLES_WEIGHTS, "state_dict (torch.save)"),
    "torchscript": _Format(".torchscript.pt", "torch.jit.save", MEDIA_COMPILED, ROLES_COMPILED, "TorchScript module",
                           "jit"),
    "torch.export": _Format(".pt2", "torch.export.save", MEDIA_COMPILED, ROLES_COMPILED, "ExportedProgram (.pt2)",
                            "aot"),
}  # fmt: skip

#: torch dtype name -> MLM data type; every other dtype (bfloat16, bool, float8, quantized...) is "other".
_DATA_TYPES: dict[str, str] = {
    "float16": "float16", "float32": "float32", "float64": "float64",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "complex64": "cfloat32", "complex128": "cfloat64",
}  # fmt: skip

#: Size used for height/width of an image input that nothing else fixes (probing.DEFAULT_SIZES agrees).
DEFAULT_SPATIAL = 64
#: Length of an inferred token (Embedding) or sequence (RNN) input.
DEFAULT_TOKENS = 16
DEFAULT_STEPS = 8
DEFAULT_CONV1D_LENGTH = 32
#: Forward parameter names too generic to be an input's name (a single input is then called "input").
_GENERIC_ARG_NAMES = frozenset({"x", "X", "inp", "input", "inputs", "input_tensor", "tensor", "data", "args"})
_SEED = 0


# ----------------------------------------------------------------------------------------------------------------
# Registry entry points
# ----------------------------------------------------------------------------------------------------------------


def can_describe(source: Any) -> bool:
    """Whether ``source`` is a PyTorch model object or a file with a PyTorch suffix (imports torch only if loaded).

    Args:
        source: a model object or a path.

    Returns:
        True for ``nn.Module`` (TorchScript included), ``ExportedProgram`` and the suffixes in :data:`SUFFIXES`.
    """
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower() in SUFFIXES
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    if isinstance(source, torch.nn.Module):
        return True
    export = sys.modules.get("torch.export")
    program_type = getattr(export, "ExportedProgram", None)
    return program_type is not None and isinstance(source, program_type)


def describe(source: Any, options: ExportOptions) -> ModelDescription:
    """Measure a PyTorch model (object or file) with a dry-run and return its description.

    Args:
        source: an ``nn.Module``, TorchScript module, ``ExportedProgram`` or a path to a PyTorch file.
        options: what the caller passed to ``export_item``.

    Returns:
        The measured description; tasks are left empty unless the model carries them.

    Raises:
        ConfigurationError: an option is invalid or missing (``model_class``, ``input_shape``, ``device``...).
        ArtifactLoadError: the file is truncated, corrupt or does not fit ``model_class``.
        UntrustedPickleError: the file needs arbitrary unpickling and ``trust_pickle`` is False.
        ProbeError: the model's forward failed on the inputs tried.
        OutputError: the artifact cannot be written.

    .. versionadded:: 0.1
    """
    torch = _import_torch()
    fmt = _check_format(options.artifact_format)
    device = _resolve_device(options.device)
    loaded = _load_source(source, options)
    if fmt == "onnx":
        return _delegate_onnx(loaded, options)
    return _describe_loaded(torch, loaded, options, device, fmt)


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            f"Describing a PyTorch model needs torch, which is not installed ({exc}).",
            hint="pip install 'mlm-export[torch]'",
        ) from exc
    return torch


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line[:limit]}"


def _check_format(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    if fmt not in ARTIFACT_FORMATS:
        raise ConfigurationError(
            f"artifact_format={fmt!r} is not supported by the PyTorch adapter.",
            hint=f"Use one of {', '.join(repr(f) for f in ARTIFACT_FORMATS)}.",
        )
    return fmt


def data_type_of(dtype: Any) -> str:
    """MLM data type of a torch dtype (``torch.bfloat16`` and ``torch.bool`` are ``"other"``)."""
    return _DATA_TYPES.get(str(dtype).removeprefix("torch."), "other")


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """Silence torch's own deprecation chatter (torch.jit is deprecated in favour of torch.export)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        yield


@contextlib.contextmanager
def _loading(path: Path, what: str) -> Iterator[None]:
    """Translate errors of reading ``path`` into :class:`ArtifactLoadError` naming the file."""
    from safetensors import SafetensorError

    try:
        with _quiet_torch():
            yield
    except MLMExportError:
        raise
    except (RuntimeError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError, IndexError,
            pickle.UnpicklingError, zipfile.BadZipFile, SafetensorError) as exc:  # fmt: skip
        raise ArtifactLoadError(
            f"Cannot read '{path}' as {what}: {_first_line(exc)}",
            hint="The file may be truncated or corrupt; save it again, or check that it is the file you meant.",
        ) from exc


@contextlib.contextmanager
def _compiling(what: str) -> Iterator[None]:
    """Translate errors of scripting/tracing/exporting into :class:`ProbeError`."""
    try:
        with _quiet_torch():
            yield
    except MLMExportError:
        raise
    except (RuntimeError, TypeError, ValueError, AssertionError, AttributeError, NotImplementedError) as exc:
        raise ProbeError(
            f"{what} failed: {_first_line(exc)}",
            hint="Choose another artifact_format (e.g. 'safetensors'), or fix the model so that it compiles.",
        ) from exc


# ----------------------------------------------------------------------------------------------------------------
# Device
# ----------------------------------------------------------------------------------------------------------------


def _resolve_device(spec: Any) -> torch.device:
    torch = _import_torch()
    if spec is None:
        spec = "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"device={spec!r} is not a device torch understands ({_first_line(exc)}).",
            hint="Use 'cpu', 'cuda', 'cuda:N' or a torch.device.",
        ) from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigurationError(
                f"device={spec!r} was asked for, but CUDA is not available "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}).",
                hint="Pass device='cpu', or run on a machine with an NVIDIA GPU and a CUDA build of torch.",
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigurationError(
                f"device={spec!r}: there are only {count} CUDA device(s) (indices 0..{count - 1}).",
                hint="Pick an index below the device count.",
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigurationError(f"device={spec!r} was asked for, but MPS is not available.", hint="Use 'cpu'.")
        return device
    raise ConfigurationError(
        f"device={spec!r}: device type {device.type!r} is not supported for the dry-run.",
        hint="Use 'cpu', 'cuda', 'cuda:N' or 'mps'.",
    )


def _accelerator(loaded: _Loaded) -> dict[str, Any]:
    """The accelerator the artifact itself requires; nothing when it can run anywhere.

    Where the dry-run ran says nothing about where the model can run: MLM's ``amd64`` means "will not use an
    accelerator" and an absent value means "may use whatever is there". Weights (state_dict, safetensors) are not
    bound to a device; a TorchScript or ``.pt2`` graph that names a CUDA device (traced on a GPU) is.
    """
    graph = None
    with contextlib.suppress(AttributeError, RuntimeError):
        if loaded.kind == "torchscript":
            graph = str(loaded.module.inlined_graph)
        elif loaded.kind == "exported":
            graph = str(loaded.program.graph)
    if graph is not None and re.search(r"\bcuda(:\d+)?\b", graph):
        kind = "TorchScript" if loaded.kind == "torchscript" else "torch.export"
        return {
            "accelerator": "cuda",
            "accelerator_constrained": True,
            "accelerator_summary": f"the {kind} graph places tensors on a CUDA device",
        }
    return {}


def _tensors_of(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def _single_device(module: nn.Module) -> torch.device | None:
    devices = {t.device for t in _tensors_of(module)}
    if not devices:
        return None
    if len(devices) > 1:
        raise ConfigurationError(
            f"The model's tensors lie on several devices ({', '.join(sorted(str(d) for d in devices))}).",
            hint="Move the whole model to one device (model.to('cpu')) before exporting it.",
        )
    device = devices.pop()
    if device.type == "meta":
        raise ConfigurationError(
            "The model's weights are on the 'meta' device: there are no values to run or publish.",
            hint="Load real weights (e.g. load_state_dict(..., assign=True)) before exporting.",
        )
    return device


@contextlib.contextmanager
def _eval_mode(module: nn.Module, *, switch: bool = True) -> Iterator[None]:
    """``eval()`` the module, then restore every submodule's own training flag (Lightning's _ModuleMode)."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        if switch:
            module.eval()
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode


@contextlib.contextmanager
def _dry_run_state(module: nn.Module, device: torch.device, *, switch_mode: bool = True) -> Iterator[None]:
    """Eval mode on ``device`` for the dry-run; the training flags and the original device come back after."""
    original = _single_device(module)
    moved = original is not None and original != device
    with _eval_mode(module, switch=switch_mode):
        try:
            if moved:
                module.to(device)
            yield
        finally:
            if moved:
                module.to(original)


# ----------------------------------------------------------------------------------------------------------------
# Sources: in-memory objects and files
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    """A source made runnable: the module to run plus what the source told about itself."""

    module: Any
    kind: str  # "module", "torchscript", "exported"
    name: str
    architecture: str
    program: Any = None
    path: Path | None = None
    artifact: Artifact | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    example_input: Any = None
    example_origin: str | None = None
    embedded: dict[str, Any] = field(default_factory=dict)


#: Key of the embedded caller metadata: safetensors ``__metadata__`` key, and ``<key>.json`` in a .pt2's extra files.
EMBEDDED_KEY = "mlm"


def _parse_embedded(text: str | bytes | None, path: Path) -> dict[str, Any]:
    """The embedded metadata JSON object of ``path``; invalid metadata is ignored with a warning."""
    if not text:
        return {}
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        warnings.warn(
            f"'{path}': embedded MLM metadata is not JSON ({exc}); it is ignored.", RuntimeWarning, stacklevel=3
        )
        return {}
    if not isinstance(payload, dict):
        warnings.warn(
            f"'{path}': embedded MLM metadata is not a JSON object; it is ignored.", RuntimeWarning, stacklevel=3
        )
        return {}
    return payload


def _load_source(source: Any, options: ExportOptions) -> _Loaded:
    torch = _import_torch()
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), options)
    program_type = torch.export.ExportedProgram
    if isinstance(source, program_type):
        return _from_program(source, None)
    if isinstance(source, torch.jit.ScriptModule):
        return _from_script(source, None)
    if isinstance(source, torch.nn.Module):
        return _from_module(source)
    raise ConfigurationError(
        f"The PyTorch adapter cannot describe a {type(source).__qualname__}.",
        hint="Pass an nn.Module, a TorchScript module, an ExportedProgram or a PyTorch file.",
    )


def _from_module(module: nn.Module) -> _Loaded:
    cls = type(module)
    loaded = _Loaded(module=module, kind="module", name=cls.__name__, architecture=_qualified_name(cls))
    loaded.hyperparameters = _module_hyperparameters(module)
    return loaded


def _from_script(module: Any, path: Path | None) -> _Loaded:
    name = getattr(module, "original_name", None) or type(module).__name__
    qualified = name
    with contextlib.suppress(AttributeError, RuntimeError):
        qualified = module._c._type().name()
    qualified = re.sub(r"^__torch__\.", "", qualified)
    qualified = re.sub(r"___torch_mangle_\d+\.", "", qualified)
    return _Loaded(module=module, kind="torchscript", name=name, architecture=qualified, path=path)


def _from_program(program: Any, path: Path | None) -> _Loaded:
    architecture = "torch.export.ExportedProgram"
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if not stack:
            continue
        roots = [qualified for module_path, qualified in stack.values() if module_path == ""]
        if roots and isinstance(roots[0], str):
            architecture = roots[0]
            break
    name = architecture.rsplit(".", 1)[-1] if architecture != "torch.export.ExportedProgram" else "ExportedProgram"
    loaded = _Loaded(module=None, kind="exported", name=name, architecture=architecture, program=program, path=path)
    example = getattr(program, "example_inputs", None)
    if example is not None:
        loaded.example_input = example
        loaded.example_origin = "the ExportedProgram's example inputs"
    return loaded


# --- files -------------------------------------------------------------------------------------------------------

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x1f\x8b", "a gzip file"),
    (b"%PDF", "a PDF document"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
)


def _sniff(path: Path) -> str:
    """The container kind of a ``.pt``-like file: torchscript, exported, torch-zip or legacy-pickle."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(16)
    except OSError as exc:
        raise ArtifactLoadError(f"Cannot read '{path}': {exc.strerror}.", hint="Check the file's permissions.") from exc
    if not head:
        raise ArtifactLoadError(f"Cannot read '{path}': the file is empty.", hint="Save the model again.")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArtifactLoadError(f"Cannot read '{path}': corrupt zip archive ({exc}).") from exc
        if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/archive_format") or "/models/" in n for n in names):
            return "exported"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        raise ArtifactLoadError(
            f"Cannot read '{path}': it is a zip archive but not a PyTorch file (entries: {', '.join(names[:5])}).",
            hint="Pass a file written by torch.save, torch.jit.save, torch.export.save or safetensors.",
        )
    if head.startswith(b"PK\x03\x04"):
        raise ArtifactLoadError(
            f"Cannot read '{path}': the zip archive is truncated or corrupt (no central directory).",
            hint="The file was probably cut off while copying or saving; save or download it again.",
        )
    if head[:1] == b"\x80":
        return "legacy-pickle"
    kind = next((label for magic, label in _MAGIC if head.startswith(magic)), None)
    what = f"it looks like {kind}" if kind else f"it starts with bytes {head[:8].hex(' ')}"
    raise ArtifactLoadError(
        f"Cannot read '{path}': it is not a PyTorch checkpoint ({what}).",
        hint="Pass a file written by torch.save, torch.jit.save, torch.export.save or safetensors.",
    )


def _load_path(path: Path, options: ExportOptions) -> _Loaded:
    if not path.is_file():
        raise ArtifactNotFoundError(f"Model file '{path}' does not exist.", hint="Check the path.")
    torch = _import_torch()
    if path.suffix.lower() == ".safetensors":
        return _load_safetensors(path, options)
    kind = _sniff(path)
    if kind == "torchscript":
        with _loading(path, "a TorchScript archive"):
            module = torch.jit.load(str(path), map_location="cpu")
        loaded = _from_script(module, path)
        loaded.artifact = _file_artifact(path, "torchscript")
        return loaded
    if kind == "exported":
        extra_files = {f"{EMBEDDED_KEY}.json": ""}
        with _loading(path, "an ExportedProgram (.pt2)"):
            program = torch.export.load(str(path), extra_files=extra_files)
        loaded = _from_program(program, path)
        loaded.embedded = _parse_embedded(extra_files[f"{EMBEDDED_KEY}.json"], path)
        loaded.artifact = _file_artifact(path, "torch.export")
        return loaded
    if path.suffix.lower() == ".pt2":
        raise ArtifactLoadError(
            f"Cannot read '{path}' as an ExportedProgram: it is a torch.save file, not a torch.export archive.",
            hint="Rename it to .pt, or save it with torch.export.save.",
        )
    content = _torch_load(path, options)
    return _from_checkpoint(content, path, options)


def _file_artifact(path: Path, fmt: str, *, roles: tuple[str, ...] | None = None) -> Artifact:
    info = _FORMATS[fmt]
    return Artifact(
        key="model",
        roles=roles or info.roles,
        path=str(path),
        artifact_type=info.artifact_type,
        media_type=info.media_type,
        title=f"{path.name}: {info.title}",
        compile_method=info.compile_method,
    )


def _torch_load(path: Path, options: ExportOptions) -> Any:
    torch = _import_torch()
    refused: pickle.UnpicklingError | None = None
    with _loading(path, "a PyTorch checkpoint"):
        try:
            # Zip-format checkpoints are memory-mapped: tensors are read lazily from the page cache, not copied.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except pickle.UnpicklingError as exc:
            refused = exc
    found = _pickle_globals(path)
    if found is None:
        raise ArtifactLoadError(
            f"Cannot read '{path}' as a PyTorch checkpoint: its pickle data is corrupt ({_first_line(refused)}).",
            hint="The file may be truncated or not a torch.save file; save it again.",
        ) from refused
    if not options.trust_pickle:
        offending = _unsafe_globals(found)
        names = ", ".join(offending[:6]) + (f" and {len(offending) - 6} more" if len(offending) > 6 else "")
        raise UntrustedPickleError(
            f"Cannot read '{path}' safely: it holds pickled Python objects ({names or 'non-tensor objects'}), "
            "not only tensors, and unpickling them can run arbitrary code.",
            hint="Pass trust_pickle=True if you trust the file's source, or save model.state_dict() instead.",
        ) from refused
    with _loading(path, "a pickled PyTorch object (trust_pickle=True)"):
        return torch.load(path, map_location="cpu", weights_only=False)


_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
)


def _pickle_globals(path: Path) -> list[str] | None:
    """The globals a torch.save pickle references, read with ``pickletools`` (nothing runs); None if unparseable."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(member)
            count = 1
        else:
            data = path.read_bytes()
            count = 4  # legacy format: magic number, protocol, sys info, then the object
        stream = io.BytesIO(data)
        found: list[str] = []
        for _ in range(count):
            _scan_pickle(stream, found)
    except (ValueError, KeyError, StopIteration, EOFError, OSError, zipfile.BadZipFile,
            UnicodeDecodeError, IndexError) as _exc:  # fmt: skip
        return None
    return found


def _scan_pickle(stream: io.BytesIO, found: list[str]) -> None:
    memo: dict[Any, Any] = {}
    recent: list[Any] = []
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        if name in _STRING_OPS:
            recent.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[-1] if recent else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            found.append(f"{module}.{attr}")
            recent.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
            found.append(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else "<unknown>")
            recent.append(None)
        else:
            recent.append(None)


def _unsafe_globals(found: Sequence[str]) -> list[str]:
    torch = _import_torch()
    allowed: set[str] = set()
    with contextlib.suppress(ImportError, AttributeError):
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed.update(_get_allowed_globals())
    for item in torch.serialization.get_safe_globals():
        obj = item[0] if isinstance(item, tuple) else item
        allowed.add(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    result: list[str] = []
    for name in found:
        storage = name.startswith("torch.") and name.endswith("Storage")
        if name not in allowed and not storage and name not in result:
            result.append(name)
    return result


_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


def _is_tensor_mapping(value: Any) -> bool:
    torch = _import_torch()
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) for k in value)
        and all(isinstance(v, torch.Tensor) for v in value.values())
    )


def _from_checkpoint(content: Any, path: Path, options: ExportOptions) -> _Loaded:
    torch = _import_torch()
    if isinstance(content, torch.export.ExportedProgram):
        loaded = _from_program(content, path)
        loaded.artifact = _file_artifact(path, "torch.save")
        return loaded
    if isinstance(content, torch.jit.ScriptModule):
        loaded = _from_script(content, path)
        loaded.artifact = _file_artifact(path, "torch.save")
        return loaded
    if isinstance(content, torch.nn.Module):
        loaded = _from_module(content)
        loaded.path = path
        loaded.artifact = _file_artifact(path, "torch.save")
        loaded.notes.append(f"'{path.name}' holds a pickled {type(content).__name__} (loaded with trust_pickle=True).")
        return loaded
    if not isinstance(content, Mapping):
        raise ArtifactLoadError(
            f"Cannot describe '{path}': it holds a {type(content).__name__}, not a state_dict or checkpoint dict.",
            hint="Save model.state_dict() (or a dict with a 'state_dict' entry).",
        )
    hyper: dict[str, Any] = {}
    checkpoint = False
    if _is_tensor_mapping(content):
        state_dict = dict(content)
    else:
        raw_hparams = content.get("hyper_parameters", content.get("hparams"))
        if isinstance(raw_hparams, Mapping):
            hyper = dict(raw_hparams)
        checkpoint = "pytorch-lightning_version" in content or isinstance(raw_hparams, Mapping)
        module_value = next((content[k] for k in _STATE_DICT_KEYS if isinstance(content.get(k), torch.nn.Module)), None)
        if module_value is not None:
            loaded = _from_module(module_value)
            loaded.path = path
            loaded.hyperparameters = {**_json_safe_mapping(hyper), **loaded.hyperparameters}
            loaded.artifact = _file_artifact(path, "torch.save", roles=ROLES_CHECKPOINT if checkpoint else None)
            return loaded
        key = next((k for k in _STATE_DICT_KEYS if _is_tensor_mapping(content.get(k))), None)
        if key is None:
            keys = ", ".join(repr(k) for k in list(content)[:10])
            raise ArtifactLoadError(
                f"Cannot find a state_dict in '{path}' (top-level keys: {keys}).",
                hint="Save model.state_dict(), or a dict with the weights under 'state_dict'.",
            )
        state_dict = dict(content[key])
    module, notes = _rebuild(path, state_dict, hyper, options, header=None)
    loaded = _from_module(module)
    loaded.path = path
    loaded.notes.extend(notes)
    loaded.hyperparameters = {**_json_safe_mapping(hyper), **loaded.hyperparameters}
    loaded.artifact = _file_artifact(path, "torch.save", roles=ROLES_CHECKPOINT if checkpoint else None)
    return loaded


def _load_safetensors(path: Path, options: ExportOptions) -> _Loaded:
    from safetensors import safe_open

    header: dict[str, tuple[tuple[int, ...], str]] = {}
    metadata: dict[str, str] = {}
    with _loading(path, "a safetensors file"), safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
        for key in handle.keys():  # noqa: SIM118 - safe_open has keys(), not __iter__
            piece = handle.get_slice(key)
            header[key] = (tuple(piece.get_shape()), str(piece.get_dtype()))
    elements = sum(math.prod(shape) for shape, _ in header.values())
    dtypes = sorted({dtype for _, dtype in header.values()})
    summary = f"'{path.name}' holds {len(header)} tensors ({elements} values; dtypes {', '.join(dtypes) or 'none'})"
    hyper: dict[str, Any] = {}
    if "hyper_parameters" in metadata:
        with contextlib.suppress(ValueError):
            parsed = json.loads(metadata["hyper_parameters"])
            if isinstance(parsed, dict):
                hyper = parsed
    if options.model_class is None:
        raise ConfigurationError(
            f"{summary}, but a safetensors file holds no architecture to run: model_class is missing.",
            hint="Pass model_class= (a class or 'pkg.module:Class') and model_kwargs= to rebuild the model.",
        )

    def state_dict_loader() -> dict[str, Any]:
        from safetensors.torch import load_file

        with _loading(path, "a safetensors file"):
            return load_file(str(path), device="cpu")

    module, notes = _rebuild(path, state_dict_loader, hyper, options, header=header)
    loaded = _from_module(module)
    loaded.path = path
    loaded.notes.extend([f"{summary}.", *notes])
    loaded.hyperparameters = {**_json_safe_mapping(hyper), **loaded.hyperparameters}
    loaded.artifact = _file_artifact(path, "safetensors")
    loaded.embedded = _parse_embedded(metadata.get(EMBEDDED_KEY), path)
    return loaded


def _resolve_model_class(spec: Any) -> Callable[..., Any]:
    if isinstance(spec, str):
        module_name, sep, attr = spec.partition(":")
        if not sep:
            module_name, _, attr = spec.rpartition(".")
        if not module_name or not attr:
            raise ConfigurationError(
                f"model_class={spec!r} is not an importable name.", hint="Use 'package.module:ClassName'."
            )
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"model_class={spec!r}: cannot import module {module_name!r} ({exc}).",
                hint="Check the spelling and that the package is installed.",
            ) from exc
        for part in attr.split("."):
            if not hasattr(target, part):
                raise ConfigurationError(
                    f"model_class={spec!r}: {target.__name__ if hasattr(target, '__name__') else target!r} "
                    f"has no attribute {part!r}.",
                    hint="Use 'package.module:ClassName'.",
                )
            target = getattr(target, part)
        spec = target
    if not callable(spec):
        raise ConfigurationError(
            f"model_class={spec!r} is not a class or factory.", hint="Pass a class, a factory or 'pkg.module:Class'."
        )
    return spec


def _init_kwargs(factory: Callable[..., Any], hyper: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's hyperparameters that ``factory`` accepts (all of them when it takes ``**kwargs``)."""
    if not hyper:
        return {}
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    parameters = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(hyper)
    accepted = {n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in hyper.items() if k in accepted}


def _build_on_meta(torch: Any, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Build the model without allocating or initialising weights (they are replaced by the file's anyway).

    Returns None when the factory cannot run on the meta device; the caller then builds it normally.
    """
    try:
        with torch.device("meta"):
            module = factory(**kwargs)
    except Exception:  # noqa: BLE001 - any failure on meta: build it normally, where errors are reported
        return None
    return module if isinstance(module, torch.nn.Module) else None


def _construct(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Call ``model_class(**kwargs)``; whatever it raises (offline download, bad kwargs...) becomes a typed error."""
    try:
        return factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 - user code may raise anything (URLError, AssertionError...)
        name = getattr(factory, "__qualname__", None) or repr(factory)
        raise ConfigurationError(
            f"model_class {name} raised {type(exc).__name__} when built with {sorted(kwargs)}: {_first_line(exc)}",
            hint="Fix the model's constructor arguments (model_kwargs= / --model-kwargs); a constructor that "
            "downloads weights needs them in the local cache or weights=None.",
        ) from exc


def _has_meta_tensors(torch: Any, module: Any) -> bool:
    """Whether any parameter, buffer or plain tensor attribute (e.g. ``example_input_array``) is still on meta."""
    tensors = [*module.parameters(), *module.buffers()]
    for sub in module.modules():
        tensors += [v for v in vars(sub).values() if isinstance(v, torch.Tensor)]
    return any(t.is_meta for t in tensors)


def _can_assign(own: Mapping[str, Any], tensors: Mapping[str, Any]) -> bool:
    """Whether the file's tensors can replace the module's as they are (same dtypes, every key present)."""
    return all(key in tensors and tensors[key].dtype == value.dtype for key, value in own.items())


def _rebuild(
    path: Path,
    state_dict: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    hyper: Mapping[str, Any],
    options: ExportOptions,
    *,
    header: Mapping[str, tuple[tuple[int, ...], str]] | None,
) -> tuple[nn.Module, list[str]]:
    """Build ``options.model_class`` and load the file's weights into it, checking keys and shapes first."""
    torch = _import_torch()
    notes: list[str] = []
    if options.model_class is None:
        count = len(header) if header is not None else len(state_dict)  # type: ignore[arg-type]
        raise ConfigurationError(
            f"'{path}' holds a bare state_dict ({count} tensors) without the model's architecture: "
            "model_class is missing.",
            hint="Pass model_class= (a class or 'pkg.module:Class') and model_kwargs= to rebuild the model.",
        )
    factory = _resolve_model_class(options.model_class)
    from_hparams = _init_kwargs(factory, hyper)
    kwargs = {**from_hparams, **dict(options.model_kwargs or {})}
    module = _build_on_meta(torch, factory, kwargs)
    module = module if module is not None else _construct(factory, kwargs)
    if not isinstance(module, torch.nn.Module):
        raise ConfigurationError(
            f"model_class returned a {type(module).__name__}, not a torch.nn.Module.",
            hint="Pass the model's class (or a factory returning an nn.Module).",
        )
    if from_hparams:
        notes.append(f"The model was built with the file's hyper_parameters {sorted(from_hparams)}.")
    own = {k: v for k, v in module.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    expected = {k: tuple(v.shape) for k, v in own.items()}
    tied = _tied_keys(own)
    if header is not None:
        stored = {k: shape for k, (shape, _dtype) in header.items()}
    else:
        stored = {k: tuple(v.shape) for k, v in state_dict.items()}  # type: ignore[union-attr]
    prefix = _matching_prefix(stored, expected, tied)
    if prefix is None:
        raise ArtifactLoadError(_mismatch_message(path, factory, stored, expected, tied), hint=(
            "Pass the model_class (and model_kwargs) that wrote this file."
        ))  # fmt: skip
    if prefix:
        notes.append(f"The weights' key prefix {prefix!r} was stripped to fit {type(module).__name__}.")
    tensors = state_dict() if callable(state_dict) else state_dict
    tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    on_meta = any(t.is_meta for t in own.values())
    if on_meta and (tied or not _can_assign(own, tensors)):  # assigning would untie shared weights
        module, on_meta = _construct(factory, kwargs), False
    with _loading(path, f"weights of {type(module).__name__}"):
        result = module.load_state_dict(tensors, strict=False, assign=on_meta)
    if on_meta and _has_meta_tensors(torch, module):
        # Something the file does not hold (a non-persistent buffer, a tied weight) was left unmaterialised.
        module = _construct(factory, kwargs)
        with _loading(path, f"weights of {type(module).__name__}"):
            result = module.load_state_dict(tensors, strict=False)
    left = [k for k in result.missing_keys if not (tied.get(k, set()) & tensors.keys())]
    if left or result.unexpected_keys:
        raise ArtifactLoadError(
            f"The weights in '{path}' do not fit {type(module).__name__}: missing {_listing(left)}; "
            f"unexpected {_listing(list(result.unexpected_keys))}.",
            hint="Pass the model_class (and model_kwargs) that wrote this file.",
        )
    return module, notes


def _tied_keys(tensors: Mapping[str, Any]) -> dict[str, set[str]]:
    """Map each key to the other keys sharing its memory (tied weights that safetensors.save_model stores once)."""
    groups: dict[tuple[int, int, tuple[int, ...]], set[str]] = {}
    for key, tensor in tensors.items():
        if tensor.is_meta:  # no memory yet: tied weights are the same Parameter object
            groups.setdefault((id(tensor), 0, tuple(tensor.shape)), set()).add(key)
        elif tensor.numel():
            groups.setdefault((tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape)), set()).add(key)
    return {k: group - {k} for group in groups.values() if len(group) > 1 for k in group}


def _matching_prefix(
    stored: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, tuple[int, ...]],
    tied: Mapping[str, set[str]],
) -> str | None:
    """'' when the keys fit as they are, a prefix ('model.', 'module.'...) whose removal makes them fit, else None.

    A key of the model missing from the file is fine when a key tied to it (same memory) is there.
    """
    candidates = [""]
    firsts = {k.split(".", 1)[0] + "." for k in stored if "." in k}
    candidates += [*sorted(firsts), "module.", "model.", "net.", "_orig_mod."]
    for prefix in dict.fromkeys(candidates):
        stripped = {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}
        if not stripped or not stripped.keys() <= expected.keys():
            continue
        if any(stripped[k] != expected[k] for k in stripped):
            continue
        if all(k in stripped or tied.get(k, set()) & stripped.keys() for k in expected):
            return prefix
    return None


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _mismatch_message(
    path: Path,
    factory: Any,
    stored: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, tuple[int, ...]],
    tied: Mapping[str, set[str]],
) -> str:
    missing = [k for k in expected if k not in stored and not tied.get(k, set()) & stored.keys()]
    unexpected = [k for k in stored if k not in expected]
    shapes = [
        f"{k} {list(stored[k])} vs {list(expected[k])}" for k in expected if k in stored and stored[k] != expected[k]
    ]
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches (file vs model) ({len(shapes)}): {_listing(shapes)}")
    name = getattr(factory, "__qualname__", repr(factory))
    return f"The weights in '{path}' do not fit model_class {name}: " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------------------------------------------
# Hyperparameters
# ----------------------------------------------------------------------------------------------------------------


def _json_safe(value: Any, depth: int = 0) -> tuple[bool, Any]:
    """(True, a JSON-safe copy) or (False, None) when ``value`` has no faithful JSON form."""
    if depth > 8:
        return False, None
    if value is None or isinstance(value, (bool, str)):
        return True, value
    if isinstance(value, int):
        return True, int(value)
    if isinstance(value, float):
        return (True, value) if math.isfinite(value) else (False, None)
    if isinstance(value, Enum):
        return _json_safe(value.value, depth + 1) if isinstance(value.value, (str, int, float)) else (True, value.name)
    if isinstance(value, os.PathLike):
        return True, os.fspath(value)
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.dtype):
            return True, str(value).removeprefix("torch.")
        if isinstance(value, torch.Size):
            return True, list(value)
        if isinstance(value, torch.Tensor):
            if value.numel() == 1:
                return _json_safe(value.item(), depth + 1)
            return False, None
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        with contextlib.suppress(ValueError, TypeError):
            return _json_safe(item(), depth + 1)
    if isinstance(value, Mapping):
        return True, _json_safe_mapping(value, depth + 1)
    if isinstance(value, (list, tuple, set, frozenset)):
        result = []
        for entry in value:
            ok, converted = _json_safe(entry, depth + 1)
            if not ok:
                return False, None
            result.append(converted)
        return True, result
    return False, None


def _json_safe_mapping(values: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in values.items():
        ok, converted = _json_safe(value, depth)
        if ok:
            result[str(key)] = converted
    return result


def _module_hyperparameters(module: nn.Module) -> dict[str, Any]:
    hyper: dict[str, Any] = {}
    hparams = getattr(module, "hparams", None)
    if isinstance(hparams, Mapping):
        hyper.update(_json_safe_mapping(hparams))
    num_classes = hyper.get("num_classes", getattr(module, "num_classes", None))
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes > 0:
        hyper["num_classes"] = num_classes
    return hyper


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


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
    torch = _import_torch()
    for tensor in _tensors_of(module) if module is not None else []:
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _parse_dtype(spec: Any, argument: str) -> Any:
    torch = _import_torch()
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
    torch = _import_torch()
    if module is None:
        return 2
    for sub in module.modules():
        if _layer_kind(torch, sub) == "Embedding" and (shape := _parameter_shape(sub, "weight")) is not None:
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


def _layer_kind(torch: Any, layer: Any) -> str | None:
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


def _layer_hint(module: Any) -> _LayerHint | None:  # noqa: C901 - one branch per layer kind
    """The input implied by the first Conv/Linear/Embedding/RNN layer in ``module.modules()`` order."""
    torch = _import_torch()
    if module is None:
        return None
    for layer_name, layer in module.named_modules():
        where = f"'{layer_name}'" if layer_name else "the model itself"
        kind = _layer_kind(torch, layer)
        size_of_layer = None if kind is None else _layer_size(kind, layer)
        if kind is None or size_of_layer is None:
            continue
        if kind == "Conv2d":
            size = _fixed_image_size(module) or (DEFAULT_SPATIAL, DEFAULT_SPATIAL)
            c = size_of_layer
            note = (
                f"The input shape [1, {c}, {size[0]}, {size[1]}] was inferred from the first Conv2d layer "
                f"({where}, in_channels={c})"
            )
            if size != (DEFAULT_SPATIAL, DEFAULT_SPATIAL):
                note += f" and the model's declared image size {size[0]}x{size[1]}"
            return _LayerHint((1, c, *size), ("batch", "channel", "height", "width"), "image", "float", note + ".")
        if kind == "Conv1d":
            c = size_of_layer
            return _LayerHint(
                (1, c, DEFAULT_CONV1D_LENGTH), ("batch", "channel", "time"), "sequence", "float",
                f"The input shape [1, {c}, {DEFAULT_CONV1D_LENGTH}] was inferred from the first Conv1d layer "
                f"({where}, in_channels={c}).",
            )  # fmt: skip
        if kind == "Conv3d":
            c = size_of_layer
            shape = (1, c, DEFAULT_STEPS, DEFAULT_SPATIAL, DEFAULT_SPATIAL)
            return _LayerHint(
                shape, ("batch", "channel", "time", "height", "width"), "image-time", "float",
                f"The input shape {list(shape)} was inferred from the first Conv3d layer ({where}, in_channels={c}).",
            )  # fmt: skip
        if kind == "Linear":
            f = size_of_layer
            return _LayerHint(
                (1, f), ("batch", "channel"), "tabular", "float",
                f"The input shape [1, {f}] was inferred from the first Linear layer ({where}, in_features={f}).",
            )  # fmt: skip
        if kind == "Embedding":
            n = size_of_layer
            return _LayerHint(
                (1, DEFAULT_TOKENS), ("batch", "token"), "tokens", "int64",
                f"The input shape [1, {DEFAULT_TOKENS}] (int64 token ids below {n}) was inferred from the first "
                f"Embedding layer ({where}, num_embeddings={n}).",
                high=n,
            )  # fmt: skip
        if kind in _RNN_KINDS:
            f = size_of_layer
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
    return None


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
    torch = _import_torch()
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
    if rank == len(hint.shape) and hint.dim_order != _rank_dim_order(rank):
        plans[0].dim_order, plans[0].layout = hint.dim_order, hint.layout


def _rank_dim_order(rank: int) -> tuple[str, ...] | None:
    """The dim_order probing gives a rank by default (None when it has no layout for it)."""
    layout = LAYOUT_BY_RANK.get(rank)
    return LAYOUTS[layout] if layout is not None else None


def _shape_plans(module: Any, options: ExportOptions) -> _Inputs:
    """Input plans from ``input_shape`` (+ ``input_dtype``): one shape, a list of shapes, or a dict name -> shape."""
    spec = options.input_shape
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
    dtypes = _input_dtypes(options.input_dtype, [n for n, _ in named], len(shapes), _float_dtype(module))
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
    if hint is not None and len(shapes[0]) == len(hint.shape) and hint.dim_order != _rank_dim_order(len(shapes[0])):
        plans[0].dim_order, plans[0].layout = hint.dim_order, hint.layout
    probe_inputs = [
        ProbeInput(p.name, s, data_type_of(p.dtype), layout=p.layout, dim_order=p.dim_order)
        for p, s in zip(plans, shapes, strict=True)
    ]
    return _Inputs(plans, probe_inputs, None, origin=origin)


def _program_inputs(torch: Any, program: Any) -> tuple[list[tuple[int, ...]], list[Any]]:
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
    torch = _import_torch()
    if loaded.example_input is not None:
        return _example_plans(module, loaded.example_input, loaded.example_origin or "the model's example inputs")
    if loaded.kind == "exported":
        shapes, dtypes = _program_inputs(torch, loaded.program)
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
    if options.example_input is not None:
        return _example_plans(module, options.example_input, "example_input")
    if options.input_shape is not None:
        return _shape_plans(module, options)
    inputs = _inferred_plans(loaded, module)
    if options.input_dtype is not None:
        names = [p.keyword or p.name for p in inputs.plans]
        dtypes = _input_dtypes(options.input_dtype, names, len(inputs.plans), _float_dtype(module))
        for plan, dtype in zip(inputs.plans, dtypes, strict=True):
            plan.dtype, plan.example = dtype, None
            if not dtype.is_floating_point and not dtype.is_complex:
                plan.low, plan.high = 0, _embedding_high(module)
        inputs.probe_inputs = [
            dataclasses.replace(probe_input, data_type=data_type_of(dtype))
            for probe_input, dtype in zip(inputs.probe_inputs, dtypes, strict=True)
        ]
    return inputs


# ----------------------------------------------------------------------------------------------------------------
# Dry-run
# ----------------------------------------------------------------------------------------------------------------


class _Runner:
    """Runs the module on random inputs of the shapes asked for and measures what comes out."""

    def __init__(self, module: Any, inputs: _Inputs, device: torch.device) -> None:
        self.module = module
        self.inputs = inputs
        self.device = device
        self.calls = 0
        self.peak_bytes: int | None = None

    def make_inputs(self, shapes: Sequence[tuple[int, ...]], device: Any = None) -> list[torch.Tensor]:
        """Tensors of ``shapes``: the example itself where the shape matches, else seeded random values."""
        torch = _import_torch()
        device = device if device is not None else self.device
        generator = torch.Generator().manual_seed(_SEED)
        tensors = []
        for plan, shape in zip(self.inputs.plans, shapes, strict=True):
            shape = tuple(int(s) for s in shape)
            if plan.example is not None and tuple(plan.example.shape) == shape:
                tensor = plan.example
            elif plan.dtype == torch.bool:
                tensor = torch.zeros(shape, dtype=torch.bool)
            elif plan.dtype.is_floating_point or plan.dtype.is_complex:
                tensor = torch.randn(shape, generator=generator, dtype=plan.dtype)
            else:
                high = max(plan.high, plan.low + 1)
                tensor = torch.randint(plan.low, high, shape, generator=generator, dtype=plan.dtype)
            tensors.append(tensor.to(device))
        return tensors

    def call(self, tensors: Sequence[torch.Tensor]) -> Any:
        """Call the module the way its inputs are passed (positional, keywords or one dict)."""
        args, kwargs = _call_structure(self.inputs, tensors)
        return self.module(*args, **kwargs)

    def __call__(self, shapes: Sequence[tuple[int, ...]]) -> list[MeasuredTensor]:
        torch = _import_torch()
        tensors = self.make_inputs(shapes)
        first = self.calls == 0
        self.calls += 1
        with torch.inference_mode():
            result = self.call(tensors)
        measured: list[MeasuredTensor] = []
        _flatten(result, "", measured)
        if first and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        return measured


def _flatten(value: Any, prefix: str, out: list[MeasuredTensor]) -> None:
    """Flatten a forward's result: tensors, tuples/lists (output_0...), dicts (keys), nested (joined names)."""
    torch = _import_torch()
    if isinstance(value, torch.Tensor):
        out.append(_measure(prefix or "output", value))
        return
    if isinstance(value, Mapping):
        for key, entry in value.items():
            _flatten(entry, f"{prefix}.{key}" if prefix else str(key), out)
        return
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        for key in value._fields:
            _flatten(getattr(value, key), f"{prefix}.{key}" if prefix else key, out)
        return
    if isinstance(value, (tuple, list)):
        for index, entry in enumerate(value):
            _flatten(entry, f"{prefix}.{index}" if prefix else f"output_{index}", out)
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            _flatten(getattr(value, item.name), f"{prefix}.{item.name}" if prefix else item.name, out)
        return
    out.append(
        MeasuredTensor(
            name=prefix or "output",
            shape=(),
            data_type="other",
            kind="other",
            description=f"a {type(value).__name__}, not a tensor",
        )
    )


def _measure(name: str, tensor: torch.Tensor) -> MeasuredTensor:
    torch = _import_torch()
    shape = tuple(int(s) for s in tensor.shape)
    description = None
    if not shape:
        shape = (1,)
        description = "A 0-d tensor (scalar), described as shape [1]."
    data_type = data_type_of(tensor.dtype)
    if data_type == "other":
        extra = f"The tensor's dtype is {tensor.dtype} (MLM has no such data type)."
        description = f"{description} {extra}" if description else extra
    non_finite = False
    if (tensor.is_floating_point() or tensor.is_complex()) and tensor.layout == torch.strided and tensor.numel():
        non_finite = not bool(torch.isfinite(tensor).all())
    return MeasuredTensor(
        name, shape, data_type, non_finite=non_finite, description=description, scalar=tensor.dim() == 0
    )


# ----------------------------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Counts:
    total: int | None
    trainable: int | None
    tensor_bytes: int


def _count(torch: Any, loaded: _Loaded) -> _Counts:
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
    strided = _import_torch().strided
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


# ----------------------------------------------------------------------------------------------------------------
# Description
# ----------------------------------------------------------------------------------------------------------------


def _runnable(torch: Any, loaded: _Loaded, device: torch.device) -> tuple[Any, bool]:
    """The module to run and whether it supports eval() (an ExportedProgram's module does not)."""
    if loaded.kind != "exported":
        return loaded.module, True
    program = loaded.program
    devices = {t.device for t in program.state_dict.values() if isinstance(t, torch.Tensor)}
    if devices and devices != {device}:
        from torch.export.passes import move_to_device_pass

        with _compiling(f"Moving the ExportedProgram to {device}"):
            program = move_to_device_pass(copy.deepcopy(program), device)
    with _compiling("Unlifting the ExportedProgram (ExportedProgram.module())"):
        return program.module(), False


def _describe_loaded(
    torch: Any, loaded: _Loaded, options: ExportOptions, device: torch.device, fmt: str | None
) -> ModelDescription:
    _check_combination(loaded, fmt)
    counts = _count(torch, loaded)
    module, can_eval = _runnable(torch, loaded, device)
    inputs = _plan_inputs(loaded, module, options)
    runner = _Runner(module, inputs, device)
    notes = list(loaded.notes)

    baseline = 0
    if device.type == "cuda":
        on_device = sum(t.numel() * t.element_size() for t in _tensors_of(module) if t.device == device)
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device) - on_device
        torch.cuda.reset_peak_memory_stats(device)
    fork_devices = [device.index] if device.type == "cuda" else []
    with _dry_run_state(module, device, switch_mode=can_eval), torch.random.fork_rng(devices=fork_devices):
        try:
            result = probe(
                runner,
                inputs.probe_inputs,
                probe_dynamic=options.probe_dynamic,
                base_shapes=inputs.base_shapes,
            )
        except ProbeError as exc:
            if inputs.origin == "inferred":
                raise ProbeError(
                    f"{exc.message} ({' '.join(inputs.notes)})",
                    hint="Pass input_shape= or example_input= with shapes the model accepts.",
                ) from (exc.__cause__ or exc)
            raise
    notes.extend(inputs.notes)
    notes.extend(result.notes)

    memory = counts.tensor_bytes
    if runner.peak_bytes is not None:
        memory = max(memory, runner.peak_bytes - baseline)

    input_specs = _input_specs(inputs, result)
    output_specs, output_notes = _output_specs(inputs, result)
    notes.extend(output_notes)

    artifacts: list[Artifact] = []
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
        artifacts.append(loaded.artifact)
    else:
        artifact, write_notes = _write_artifact(torch, loaded, module, runner, result, options, fmt, description)
        artifacts.append(artifact)
        notes.extend(write_notes)
    return description.replace(artifacts=tuple(artifacts), notes=tuple(notes))


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


def _output_specs(inputs: _Inputs, result: ProbeResult) -> tuple[tuple[OutputSpec, ...], list[str]]:
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
        specs.append(
            OutputSpec(
                name=out.name,
                shape=out.shape,
                dim_order=("value",) if out.scalar else output_dim_order(out.shape, layouts, result.input_dim_orders),
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


# ----------------------------------------------------------------------------------------------------------------
# Artifacts
# ----------------------------------------------------------------------------------------------------------------


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


def _atomic_write(target: Path, writer: Callable[[Path], None]) -> None:
    """Write through a temp file in the target directory, then ``os.replace``: never a half-written artifact."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}"
        )
        os.close(handle)
    except OSError as exc:
        raise OutputError(
            f"Cannot write the model artifact to '{target.parent}': {exc.strerror or exc}.",
            hint="Pass an artifact_dir= you can write to.",
        ) from exc
    temp = Path(temp_name)
    try:
        writer(temp)
        from mlm_export.stac.writer import new_file_mode

        os.chmod(temp, new_file_mode())  # mkstemp makes 0600: respect the umask like every other file written
        os.replace(temp, target)
    except OSError as exc:
        raise OutputError(
            f"Cannot write the model artifact '{target}': {exc.strerror or exc}.",
            hint="Check free space and permissions of artifact_dir.",
        ) from exc
    finally:
        temp.unlink(missing_ok=True)


def _write_artifact(
    torch: Any,
    loaded: _Loaded,
    module: Any,
    runner: _Runner,
    result: ProbeResult,
    options: ExportOptions,
    fmt: str | None,
    description: ModelDescription,
) -> tuple[Artifact, list[str]]:
    fmt = fmt or _default_format(loaded)
    notes: list[str] = []
    info = _FORMATS[fmt]
    directory = Path(options.artifact_dir) if options.artifact_dir is not None else Path.cwd() / "artifacts"
    target = directory / f"{slugify(loaded.name)}{info.suffix}"
    if target.exists() and not options.overwrite:
        raise OutputExistsError(
            f"Artifact '{target}' already exists; an earlier item may point to it.",
            hint="Pass overwrite=True to replace it, or another artifact_dir.",
        )

    if fmt == "safetensors":
        from safetensors.torch import save_file

        tensors, dropped = _plain_state_dict(torch, module)
        if dropped:
            notes.append(f"Non-tensor state_dict entries {_listing(dropped, 4)} are not in the safetensors file.")
        metadata = {"format": "pt"}
        if options.embed_metadata:
            metadata[EMBEDDED_KEY] = json.dumps(options.metadata, sort_keys=True)
            metadata[f"{EMBEDDED_KEY}.description"] = json.dumps(description.to_dict(), sort_keys=True)
        _atomic_write(target, lambda p: save_file(tensors, str(p), metadata=metadata))
    elif fmt == "torch.save":
        tensors, _dropped = _plain_state_dict(torch, module, keep_objects=True)
        _atomic_write(target, lambda p: torch.save(tensors, p))
    elif fmt == "torchscript":
        scripted, script_notes = _to_torchscript(torch, loaded, module, runner, result)
        notes.extend(script_notes)
        with _compiling("torch.jit.save"):
            _atomic_write(target, lambda p: torch.jit.save(scripted, str(p)))
    else:
        program, export_notes = _to_exported(torch, loaded, module, runner, result)
        notes.extend(export_notes)
        with _compiling("torch.export.save"):
            extra = {f"{EMBEDDED_KEY}.json": json.dumps(options.metadata)} if options.embed_metadata else None
            _atomic_write(target, lambda p: torch.export.save(program, str(p), extra_files=extra))
    artifact = Artifact(
        key="model",
        roles=info.roles,
        path=str(target),
        artifact_type=info.artifact_type,
        media_type=info.media_type,
        title=f"{loaded.name} {info.title}",
        compile_method=info.compile_method,
    )
    return artifact, notes


def _plain_state_dict(torch: Any, module: Any, *, keep_objects: bool = False) -> tuple[dict[str, Any], list[str]]:
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


def _to_torchscript(
    torch: Any, loaded: _Loaded, module: Any, runner: _Runner, result: ProbeResult
) -> tuple[Any, list[str]]:
    if loaded.kind == "torchscript":
        return module, []
    from torch.jit.frontend import FrontendError

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


def _to_exported(
    torch: Any, loaded: _Loaded, module: Any, runner: _Runner, result: ProbeResult
) -> tuple[Any, list[str]]:
    if loaded.kind == "exported":
        return loaded.program, []
    notes: list[str] = []
    device = _single_device(module) or torch.device("cpu")
    tensors = _export_inputs(runner, result, device)
    args, kwargs = _call_structure(runner.inputs, tensors)
    dynamic = _dynamic_shapes(torch, runner, result)
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


def _dynamic_shapes(torch: Any, runner: _Runner, result: ProbeResult) -> Any:
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


# ----------------------------------------------------------------------------------------------------------------
# Loading a published artifact (for mlm_export.loading)
# ----------------------------------------------------------------------------------------------------------------


def load_artifact(path: str | os.PathLike[str], artifact_type: str, options: ExportOptions) -> Any:
    """Load a published PyTorch artifact as a module on ``options.device`` (for :mod:`mlm_export.loading`).

    The file is opened exactly as :func:`describe` opens it: ``weights_only`` unless ``options.trust_pickle``,
    ``options.model_class`` for weights files, ``torch.jit.load`` / ``torch.export.load`` for compiled ones.

    Args:
        path: the artifact file.
        artifact_type: its ``mlm:artifact_type`` (the file's content decides how it is read).
        options: ``model_class``/``model_kwargs``, ``trust_pickle`` and ``device``.

    Returns:
        An ``nn.Module`` in eval mode (an ``ExportedProgram``'s unlifted module for ``torch.export.save``).

    Raises:
        ConfigurationError: ``model_class`` is needed but missing, or the device is not available.
        ArtifactLoadError: the file is corrupt or does not fit ``model_class``.
        UntrustedPickleError: the file needs arbitrary unpickling and ``trust_pickle`` is False.

    .. versionadded:: 0.1
    """
    torch = _import_torch()
    device = _resolve_device(options.device)
    loaded = _load_path(Path(path), options)
    module, _can_eval = _runnable(torch, loaded, device)
    if loaded.kind != "exported":
        module.to(device)
        module.eval()
    return module


#: MLM data type -> torch dtype name, for inputs built from an item ("other" is fed as float32).
_TORCH_DTYPES: dict[str, str] = {mlm: name for name, mlm in _DATA_TYPES.items()}


def run_artifact(
    model: Any, inputs: Sequence[tuple[str, tuple[int, ...], str]], options: ExportOptions
) -> list[MeasuredTensor]:
    """Run ``model`` once on seeded inputs of the given ``(name, shape, data_type)`` and measure its tensor outputs.

    Inputs are passed by keyword when the forward names all of them, else by position in the given order.

    Raises:
        ProbeError: the forward fails on these inputs.

    .. versionadded:: 0.1
    """
    torch = _import_torch()
    device = _resolve_device(options.device)
    keywords = {p.name for p in _forward_parameters(model) if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    by_keyword = len(inputs) > 1 and all(name in keywords for name, _, _ in inputs)
    plans = []
    for name, _shape, data_type in inputs:
        # "other" is a float type MLM has no name for (bfloat16...): feed the dtype the model's weights have.
        dtype = _float_dtype(model) if data_type == "other" else getattr(torch, _TORCH_DTYPES.get(data_type, "float32"))
        plan = _InputPlan(name=name, dtype=dtype, keyword=name if by_keyword else None)
        if not dtype.is_floating_point and not dtype.is_complex:
            plan.high = _embedding_high(model)
        plans.append(plan)
    shapes = [tuple(int(s) for s in shape) for _, shape, _ in inputs]
    probe_inputs = [ProbeInput(p.name, s, data_type_of(p.dtype)) for p, s in zip(plans, shapes, strict=True)]
    runner = _Runner(model, _Inputs(plans, probe_inputs, shapes), device)
    switch = not isinstance(model, torch.fx.GraphModule)  # an unlifted ExportedProgram has no train/eval
    with _dry_run_state(model, device, switch_mode=switch), torch.random.fork_rng(devices=[]):
        try:
            measured = runner(shapes)
        except (RuntimeError, ValueError, TypeError, AssertionError, IndexError, KeyError) as exc:
            shown = ", ".join(f"{n}{list(s)}" for (n, _, _), s in zip(inputs, shapes, strict=True))
            raise ProbeError(
                f"The model's forward failed on inputs {shown}: {_first_line(exc)}",
                hint="Check that the item's mlm:input matches the model.",
            ) from exc
    return [m for m in measured if m.kind == "tensor"]


# ----------------------------------------------------------------------------------------------------------------
# ONNX delegation
# ----------------------------------------------------------------------------------------------------------------


def _delegate_onnx(loaded: _Loaded, options: ExportOptions) -> ModelDescription:
    try:
        onnx_adapter = importlib.import_module("mlm_export.adapters.onnx")
    except ImportError as exc:
        raise MissingDependencyError(
            f"artifact_format='onnx' needs the ONNX adapter and its dependencies ({exc}).",
            hint="pip install 'mlm-export[onnx]'",
        ) from exc
    delegate = getattr(onnx_adapter, "describe_torch_module", None)
    if delegate is None:
        raise ConfigurationError(
            "artifact_format='onnx' is not available: mlm_export.adapters.onnx has no describe_torch_module().",
            hint="Use artifact_format='safetensors', 'torch.save', 'torchscript' or 'torch.export'.",
        )
    module = loaded.module if loaded.kind != "exported" else loaded.program
    changes: dict[str, Any] = {"metadata": {"name": loaded.name, "architecture": loaded.architecture,
                                            **dict(options.metadata or {})}}  # fmt: skip
    runnable = module if loaded.kind != "exported" else module.module()
    if loaded.kind != "exported" and options.input_dim_orders is None:
        planned = _plan_inputs(loaded, runnable, options)
        changes["input_dim_orders"] = tuple(p.resolved_dim_order() for p in planned.probe_inputs)
    if options.example_input is None and options.input_shape is None:
        inputs = _inferred_plans(loaded, runnable)
        device = _single_device(runnable) or _import_torch().device("cpu")
        tensors = _Runner(runnable, inputs, device).make_inputs(_base_shapes(inputs), device=device)
        args, kwargs = _call_structure(inputs, tensors)
        changes["example_input"] = kwargs if kwargs and not args else (args[0] if len(args) == 1 else args)
    return delegate(module, dataclasses.replace(options, **changes))


__all__ = ["ARTIFACT_FORMATS", "SUFFIXES", "can_describe", "data_type_of", "describe", "load_artifact", "run_artifact"]
