"""Identify and open PyTorch sources: in-memory modules, TorchScript, ExportedProgram, checkpoints, safetensors."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from mlm_export import embedded
from mlm_export.adapters.archive_safety import check_torch_file, require_regular_file, weights_only_reason
from mlm_export.adapters.torch.boundary import (
    EXPORT_LOAD_ERRORS,
    SAFETENSORS_ERRORS,
    TORCH_LOAD_ERRORS,
    TORCHSCRIPT_LOAD_ERRORS,
    TRUSTED_LOAD_ERRORS,
    UNSAFE_GLOBALS_ERRORS,
    _first_line,
    _loading,
)
from mlm_export.adapters.torch.formats import _FORMATS, ROLES_CHECKPOINT
from mlm_export.adapters.torch.rebuild import _json_safe_mapping, _module_hyperparameters, _rebuild
from mlm_export.adapters.torch.sharded import (
    is_shard_index,
    read_sharded,
    shard_artifacts,
    state_dict_loader,
)
from mlm_export.description import Artifact
from mlm_export.errors import (
    ArtifactLoadError,
    ConfigurationError,
    UntrustedPickleError,
)

if TYPE_CHECKING:
    from mlm_export.adapters import ExportOptions


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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
    #: Further files of the source published beside ``artifact`` (the other shards and the index of a sharded one).
    more_artifacts: list[Artifact] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    example_input: Any = None
    example_origin: str | None = None
    embedded: dict[str, Any] = field(default_factory=dict)


def _load_source(source: Any, options: ExportOptions) -> _Loaded:
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


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x1f\x8b", "a gzip file"),
    (b"%PDF", "a PDF document"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x80", "a Python pickle that torch.save did not write (no magic number)"),
)


def _sniff(path: Path) -> str:
    """The container kind of a ``.pt``-like file: torchscript, exported, torch-zip or legacy-pickle."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(32)
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
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"  # also when one of the two is missing: torch.jit.load then names what is missing
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
    if _is_legacy_torch_save(head):
        return "legacy-pickle"
    kind = next((label for magic, label in _MAGIC if head.startswith(magic)), None)
    if kind is None and _is_safetensors(path):
        kind = "a safetensors file (load it with mlm:artifact_type safetensors.torch.save_file)"
    what = f"it looks like {kind}" if kind else f"it starts with bytes {head[:8].hex(' ')}"
    raise ArtifactLoadError(
        f"Cannot read '{path}': it is not a PyTorch checkpoint ({what}).",
        hint="Pass a file written by torch.save, torch.jit.save, torch.export.save or safetensors.",
    )


_KIND_LABELS = {
    "torchscript": "a TorchScript archive",
    "exported": "a torch.export archive",
    "torch-zip": "a torch.save checkpoint",
    "legacy-pickle": "a legacy torch.save pickle",
}

#: How a legacy (non-zip) ``torch.save`` file starts: its pickled magic number 0x1950a86a20f9469cfc6c as a LONG1.
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _is_legacy_torch_save(head: bytes) -> bool:
    """Whether ``head`` opens a legacy torch.save pickle (protocol 2+, the magic number before anything else).

    A pickle ``PROTO`` byte alone would take 1 in 256 random files for a checkpoint; the magic number does not.
    Protocols 4 and 5 put a ``FRAME`` opcode (9 bytes) between the two.
    """
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        return False
    start = 11 if head[2:3] == b"\x95" else 2
    return head[start : start + len(_LEGACY_MAGIC)] == _LEGACY_MAGIC


#: ``mlm:artifact_type`` -> the containers :func:`_sniff` may find in a file of that type.
_KINDS_OF_TYPE: dict[str, tuple[str, ...]] = {
    "torch.save": ("torch-zip", "legacy-pickle"),
    "torch.jit.save": ("torchscript",),
    "torch.export.save": ("exported",),
}
SAFETENSORS_TYPE = "safetensors.torch.save_file"


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` opens like a safetensors file: an 8-byte little-endian header length, then a JSON object."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(9)
            size = os.fstat(stream.fileno()).st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


def _load_path(path: Path, options: ExportOptions, artifact_type: str | None = None) -> _Loaded:
    """Open a PyTorch file; ``artifact_type`` (an Item's ``mlm:artifact_type``) decides how, checked on the content.

    Without one (a file given by path), a ``*.index.json`` name is a sharded checkpoint, ``.safetensors`` a
    safetensors file, anything else is sniffed.
    """
    require_regular_file(path)
    if is_shard_index(path):
        return _load_sharded(path, options)
    if artifact_type == SAFETENSORS_TYPE or (artifact_type is None and path.suffix.lower() == ".safetensors"):
        if artifact_type is not None and not _is_safetensors(path):  # by name: safetensors says what is wrong
            raise ArtifactLoadError(
                f"Cannot read '{path}' as a safetensors file (mlm:artifact_type {artifact_type}): it does not "
                "start with a safetensors header.",
                hint="The file is not what its Item or name says: fetch it again or fix the Item's mlm:artifact_type.",
            )
        return _load_safetensors(path, options)
    check_torch_file(path, trust_pickle=options.load.trust_pickle)  # before any torch loader sees the file
    kind = _sniff(path)
    expected = _KINDS_OF_TYPE.get(artifact_type or "")
    if expected is not None and kind not in expected:
        raise ArtifactLoadError(
            f"'{path}' is recorded as mlm:artifact_type {artifact_type!r} but holds {_KIND_LABELS[kind]}.",
            hint="The Item's mlm:artifact_type does not fit its file: fix the Item or export the model again.",
        )
    if kind == "torchscript":
        with _loading(path, "a TorchScript archive", TORCHSCRIPT_LOAD_ERRORS):
            module = torch.jit.load(str(path), map_location="cpu")
        loaded = _from_script(module, path)
        loaded.artifact = _file_artifact(path, "torchscript")
        return loaded
    if kind == "exported":
        extra_files = {embedded.PT2_EXTRA_FILE: ""}
        with _loading(path, "an ExportedProgram (.pt2)", EXPORT_LOAD_ERRORS):
            with open(path, "rb") as stream:  # a file object: a cache entry has no .pt2 suffix, torch would log it
                program = torch.export.load(stream, extra_files=extra_files)
        loaded = _from_program(program, path)
        loaded.embedded = embedded.caller_values(embedded.decode(extra_files[embedded.PT2_EXTRA_FILE], path))
        loaded.artifact = _file_artifact(path, "torch.export")
        return loaded
    if path.suffix.lower() == ".pt2":
        raise ArtifactLoadError(
            f"Cannot read '{path}' as an ExportedProgram: it is a torch.save file, not a torch.export archive.",
            hint="Rename it to .pt, or save it with torch.export.save.",
        )
    content = _torch_load(path, options)
    return _from_checkpoint(content, path, options)


def _file_artifact(
    path: Path, fmt: str, *, roles: tuple[str, ...] | None = None, content: str | None = None
) -> Artifact:
    """The asset of a model file; ``content`` says what a ``torch.save`` file holds when it is not a state_dict."""
    info = _FORMATS[fmt]
    return Artifact(
        key="model",
        roles=roles or info.roles,
        path=str(path),
        artifact_type=info.artifact_type,
        media_type=info.media_type,
        title=f"{path.name}: {content} (torch.save)" if content else f"{path.name}: {info.title}",
        compile_method=info.compile_method,
    )


def _torch_load(path: Path, options: ExportOptions) -> Any:
    refused: pickle.UnpicklingError | None = None
    with _loading(path, "a PyTorch checkpoint", TORCH_LOAD_ERRORS):
        try:
            # Zip-format checkpoints are memory-mapped: tensors are read lazily from the page cache, not copied.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except pickle.UnpicklingError as exc:
            refused = exc
    offending = unsafe_globals(path)
    if offending is None:
        raise ArtifactLoadError(
            f"Cannot read '{path}' as a PyTorch checkpoint: its pickle data is corrupt ({_first_line(refused)}).",
            hint="The file may be truncated or not a torch.save file; save it again.",
        ) from refused
    if not options.load.trust_pickle and not offending:
        raise UntrustedPickleError(
            f"Cannot read '{path}' safely: it references only tensors, but torch's weights-only loader cannot read "
            f"how it is pickled ({weights_only_reason(refused)}; legacy torch.save "
            "files with pickle_protocol 4 or 5 are refused so), and the full unpickler can run arbitrary code.",
            hint="Save it again with torch.save's defaults, or pass trust_pickle=True if you trust the file's source.",
        ) from refused
    if not options.load.trust_pickle:
        names = ", ".join(offending[:6]) + (f" and {len(offending) - 6} more" if len(offending) > 6 else "")
        raise UntrustedPickleError(
            f"Cannot read '{path}' safely: it holds pickled Python objects ({names or 'non-tensor objects'}), "
            "not only tensors, and unpickling them can run arbitrary code.",
            hint="Pass trust_pickle=True if you trust the file's source, or save model.state_dict() instead.",
        ) from refused
    with _loading(path, "a pickled PyTorch object (trust_pickle=True)", TRUSTED_LOAD_ERRORS):
        return torch.load(path, map_location="cpu", weights_only=False)


_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
)


def unsafe_globals(path: Path) -> list[str] | None:
    """The globals a torch.save file's pickle needs beyond what ``weights_only`` loading allows; None if unreadable.

    Zip checkpoints are scanned by ``torch.serialization.get_unsafe_globals_in_checkpoint``; legacy (non-zip)
    files, which it does not read, by :func:`_legacy_globals` (``pickletools``: nothing runs). The one place a
    stricter scanner of every pickled entry plugs in.
    """
    if zipfile.is_zipfile(path):
        try:
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except UNSAFE_GLOBALS_ERRORS:
            return None
    found = _legacy_globals(path)
    if found is None:
        return None
    allowed = {f"{getattr(o[0] if isinstance(o, tuple) else o, '__module__', '')}."
               f"{getattr(o[0] if isinstance(o, tuple) else o, '__qualname__', '')}"
               for o in torch.serialization.get_safe_globals()}  # fmt: skip
    return list(dict.fromkeys(n for n in found if n not in allowed and not n.startswith(_WEIGHTS_ONLY_PREFIXES)))


#: Globals of a legacy torch.save pickle that ``weights_only`` loading accepts (tensors, storages, containers).
_WEIGHTS_ONLY_PREFIXES = ("torch.", "collections.OrderedDict", "builtins.set", "__builtin__.set", "_codecs.encode")


def _legacy_globals(path: Path) -> list[str] | None:
    """The globals a legacy torch.save pickle references, read with ``pickletools``; None if unparseable."""
    try:
        stream = io.BytesIO(path.read_bytes())
        found: list[str] = []
        for _ in range(4):  # legacy format: magic number, protocol, sys info, then the object
            _scan_pickle(stream, found)
    except (ValueError, OSError):  # pickletools reports bad opcodes and short data (and bad text) as ValueError
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


_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


def _is_tensor_mapping(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) for k in value)
        and all(isinstance(v, torch.Tensor) for v in value.values())
    )


def _from_checkpoint(content: Any, path: Path, options: ExportOptions) -> _Loaded:
    if isinstance(content, torch.export.ExportedProgram):
        loaded = _from_program(content, path)
        loaded.artifact = _file_artifact(path, "torch.save", content="pickled ExportedProgram")
        return loaded
    if isinstance(content, torch.jit.ScriptModule):
        loaded = _from_script(content, path)
        loaded.artifact = _file_artifact(path, "torch.save", content="pickled TorchScript module")
        return loaded
    if isinstance(content, torch.nn.Module):
        loaded = _from_module(content)
        loaded.path = path
        loaded.artifact = _file_artifact(path, "torch.save", content=f"pickled {type(content).__name__} module")
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
        lightning = "pytorch-lightning_version" in content
        what = "a Lightning checkpoint" if lightning else "a checkpoint dict"
        module_value = next((content[k] for k in _STATE_DICT_KEYS if isinstance(content.get(k), torch.nn.Module)), None)
        if module_value is not None:
            loaded = _from_module(module_value)
            loaded.path = path
            loaded.hyperparameters = {**_json_safe_mapping(hyper), **loaded.hyperparameters}
            loaded.artifact = _file_artifact(
                path, "torch.save", roles=ROLES_CHECKPOINT if checkpoint else None,
                content=f"{what.removeprefix('a ')} with a pickled {type(module_value).__name__} module",
            )  # fmt: skip
            return loaded
        key = next((k for k in _STATE_DICT_KEYS if _is_tensor_mapping(content.get(k))), None)
        if key is None:
            keys = ", ".join(repr(k) for k in list(content)[:10])
            raise ArtifactLoadError(
                f"Cannot find a state_dict in '{path}' (top-level keys: {keys}).",
                hint="Save model.state_dict(), or a dict with the weights under 'state_dict'.",
            )
        state_dict = dict(content[key])
    holds = "a bare state_dict" if _is_tensor_mapping(content) else f"{what} with a state_dict"
    module, notes = _rebuild(path, state_dict, hyper, options, header=None, holds=holds)
    loaded = _from_module(module)
    loaded.path = path
    loaded.notes.extend(notes)
    loaded.hyperparameters = {**_json_safe_mapping(hyper), **loaded.hyperparameters}
    content_label = None if _is_tensor_mapping(content) else what.removeprefix("a ")
    loaded.artifact = _file_artifact(
        path, "torch.save", roles=ROLES_CHECKPOINT if checkpoint else None, content=content_label
    )
    return loaded


def _load_safetensors(path: Path, options: ExportOptions) -> _Loaded:
    header: dict[str, tuple[tuple[int, ...], str]] = {}
    metadata: dict[str, str] = {}
    with _loading(path, "a safetensors file", SAFETENSORS_ERRORS), safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
        for key in handle.keys():
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
    if options.load.model_class is None:
        raise ConfigurationError(
            f"{summary}, but a safetensors file holds no architecture to run: model_class is missing.",
            hint="Pass model_class= (a class or 'pkg.module:Class') and model_kwargs= to rebuild the model.",
        )

    def state_dict_loader() -> dict[str, Any]:
        with _loading(path, "a safetensors file", SAFETENSORS_ERRORS):
            return load_file(str(path), device="cpu")

    module, notes = _rebuild(path, state_dict_loader, hyper, options, header=header)
    loaded = _from_module(module)
    loaded.path = path
    loaded.notes.extend([f"{summary}.", *notes])
    loaded.hyperparameters = {**_json_safe_mapping(hyper), **loaded.hyperparameters}
    loaded.artifact = _file_artifact(path, "safetensors")
    loaded.embedded = embedded.caller_values(embedded.decode(metadata.get(embedded.KEY), path))
    return loaded


def _load_sharded(index: Path, options: ExportOptions) -> _Loaded:
    """A sharded checkpoint (index + shards): checked, counted from headers, hashed in parallel, then rebuilt."""
    checkpoint = read_sharded(
        index, check=lambda shard: check_torch_file(shard, trust_pickle=options.load.trust_pickle)
    )
    summary = (
        f"'{index.name}' indexes {len(checkpoint.shards)} shards holding {len(checkpoint.header)} tensors "
        f"({checkpoint.total_parameters} values, counted from the shard headers)"
    )
    if options.load.model_class is None:
        raise ConfigurationError(
            f"{summary}, but shards hold no architecture to run: model_class is missing.",
            hint="Pass model_class= (a class or 'pkg.module:Class') and model_kwargs= to rebuild the model.",
        )
    module, notes = _rebuild(index, state_dict_loader(checkpoint), {}, options, header=checkpoint.header)
    loaded = _from_module(module)
    loaded.path = index
    loaded.notes.extend([f"{summary}.", *notes])
    first, *rest = shard_artifacts(checkpoint)  # hashed (in parallel) only when described, not when loaded
    loaded.artifact = first
    loaded.more_artifacts = rest
    return loaded
