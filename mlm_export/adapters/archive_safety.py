"""Checks that run on a PyTorch file BEFORE any torch loader sees it: zip bombs and pickled payloads.

``torch.load(weights_only=True)`` guards a checkpoint's own ``data.pkl`` and TorchScript's C++ unpickler resolves
no Python callables, but ``torch.export.load`` unpickles the archive's sample inputs (and pickled weights and
constants) with ``weights_only=False``: a ``.pt2``, or the same zip renamed ``.pt``, would run code while it is
being described. :func:`check_torch_file` therefore

* refuses zip entries that inflate far beyond their stored size (torch never compresses entries; a 4 MB bomb
  inflating to 4 GiB is refused from the central directory, before anything is inflated), stored entries whose
  sizes disagree and entries that reach past the end of the file;
* verifies every payload a torch.export archive unpickles (``data/sample_inputs/*``, pickled ``data/weights/*``
  and ``data/constants/*``, legacy ``<model>.pt`` payloads, the pre-2.8 ``serialized_*.pt`` layout that
  ``torch.export.load`` falls back to) with torch's own restricted unpickler (``weights_only=True``), and refuses
  pickled opaque/custom objects and AOTInductor shared libraries, unless ``trust_pickle`` is set. Every entry of
  every zip is looked at, whichever loader the content would select.

It is called by the PyTorch adapter's file loader, the one path through which ``export``, ``inspect``,
``load_model`` and ``check`` open every ``.pt``/``.pth``/``.ckpt``/``.bin``/``.pt2`` file.
"""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlm_export.errors import ArtifactLoadError, ArtifactNotFoundError, UntrustedPickleError

#: A compressed entry may inflate at most this many times its stored size (torch writes entries uncompressed).
MAX_COMPRESSION_RATIO = 100
#: Compressed entries smaller than this when inflated are never refused for their ratio (JSON, small configs).
RATIO_FREE_BYTES = 1024 * 1024
#: Largest inflated size of all compressed entries together.
MAX_INFLATED_BYTES = 256 * 1024 * 1024
#: Largest pickled payload of a torch.export archive that is verified in memory without ``trust_pickle``.
MAX_VERIFIED_PAYLOAD = 1024 * 1024 * 1024
_HINT_BOMB = "The file is not a PyTorch archive as torch writes it (torch never compresses entries); do not use it."
_HINT_PICKLE = "Pass trust_pickle=True (--trust-pickle) only if you trust the file's source."
_PICKLED_OBJECT_PREFIXES = ("custom_obj", "opaque_obj")
_AOTI_DIR = "data/aotinductor/"


def require_regular_file(path: str | os.PathLike[str], what: str = "Model file") -> Path:
    """Return ``path`` when it is a regular file (symlinks followed).

    Raises:
        ArtifactNotFoundError: nothing exists at ``path``.
        ArtifactLoadError: it exists but is a directory, FIFO, socket or device ("not a regular file").
    """
    file_path = Path(path)
    try:
        mode = file_path.stat().st_mode
    except FileNotFoundError as exc:
        raise ArtifactNotFoundError(f"{what} '{file_path}' does not exist.", hint="Check the path.") from exc
    except OSError as exc:
        raise ArtifactLoadError(f"Cannot read {what.lower()} '{file_path}': {exc.strerror}.") from exc
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise ArtifactLoadError(
            f"{what} '{file_path}' is not a regular file (it is {kind}).", hint="Pass the path of a model file."
        )
    return file_path


def check_torch_file(path: str | os.PathLike[str], *, trust_pickle: bool) -> None:
    """Refuse a PyTorch file that would inflate without bound or unpickle code, before torch opens it.

    Args:
        path: a ``.pt``/``.pth``/``.ckpt``/``.bin``/``.pt2`` file (its content decides, not its name).
        trust_pickle: skip the pickle checks (the zip checks always run).

    Raises:
        ArtifactLoadError: a zip entry is a bomb, or the archive is inconsistent.
        UntrustedPickleError: a payload torch would unpickle holds non-tensor objects and ``trust_pickle`` is False.
    """
    file_path = require_regular_file(path)
    if not zipfile.is_zipfile(file_path):
        return  # legacy torch.save pickle: read only by torch.load(weights_only=True) unless trust_pickle
    try:
        with zipfile.ZipFile(file_path) as archive:
            check_zip_entries(archive, file_path.stat().st_size, str(file_path))
            if not trust_pickle:
                _check_exported_payloads(archive, str(file_path))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArtifactLoadError(f"Cannot read '{file_path}': corrupt zip archive ({exc}).") from exc


def check_zip_entries(archive: zipfile.ZipFile, archive_size: int, where: str) -> None:
    """Refuse zip bombs and impossible entries from the central directory alone (nothing is inflated).

    Raises:
        ArtifactLoadError: naming the entry and its sizes.
    """
    inflated = 0
    for info in archive.infolist():
        name = f"'{info.filename}' of '{where}'"
        if info.header_offset + info.compress_size > archive_size:
            raise ArtifactLoadError(
                f"Entry {name} reaches past the end of the file; the archive is truncated or crafted.",
                hint="Download or save the file again.",
            )
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise ArtifactLoadError(
                    f"Entry {name} is stored uncompressed but declares {info.file_size} bytes inflated and "
                    f"{info.compress_size} stored.",
                    hint=_HINT_BOMB,
                )
            continue
        inflated += info.file_size
        ratio_bad = info.file_size > RATIO_FREE_BYTES and info.file_size > MAX_COMPRESSION_RATIO * info.compress_size
        if ratio_bad or inflated > MAX_INFLATED_BYTES:
            raise ArtifactLoadError(
                f"Entry {name} would inflate from {info.compress_size} to {info.file_size} bytes "
                f"(zip bomb); refused before inflating.",
                hint=_HINT_BOMB,
            )


def _relative(name: str) -> tuple[str, str]:
    """``m/data/x`` -> (``m/``, ``data/x``): torch archives keep everything under one folder (legacy: none)."""
    root, slash, rest = name.partition("/")
    return (f"{root}/", rest) if slash else ("", name)


def _unpickled_entry(relative: str) -> str | None:
    """How ``torch.export.load`` would read an entry by its name alone: "torch.load", "code" or None (raw bytes)."""
    base = relative.rsplit("/", 1)[-1]
    if relative.startswith(_AOTI_DIR):
        return "code"  # AOTInductor packages: shared libraries torch.export.load would dlopen
    if relative.startswith("data/sample_inputs/"):
        return "torch.load"
    if relative.startswith(("data/weights/", "data/constants/")) and base.endswith(".pt"):
        return "torch.load"  # legacy whole-state-dict payloads
    if "/" not in relative and base.startswith("serialized_") and base.endswith(".pt"):
        return "torch.load"  # the pre-2.8 .pt2 layout (torch.export.load falls back to it)
    return None


def _pickled_payloads(archive: zipfile.ZipFile, where: str) -> Iterator[tuple[str, str]]:
    """(entry name, how it is read) of every entry ``torch.export.load`` could unpickle or execute.

    Every entry of the archive is looked at, whatever folder it sits in: the checks do not depend on which loader
    the file's content selects, so a zip that merely looks like a checkpoint is checked as strictly.
    """
    names = set(archive.namelist())
    for name in sorted(names):
        root, relative = _relative(name)
        how = _unpickled_entry(relative)
        if how is not None:
            yield name, how
        elif relative.startswith(("data/weights/", "data/constants/")) and relative.endswith("_config.json"):
            folder = root + relative.rsplit("/", 1)[0]
            for path_name, use_pickle in _config_payloads(archive, name, where):
                target = f"{folder}/{path_name}"
                if path_name.startswith(_PICKLED_OBJECT_PREFIXES):
                    yield target, "object"
                elif use_pickle and target in names:
                    yield target, "torch.load"


def _config_payloads(archive: zipfile.ZipFile, entry: str, where: str) -> list[tuple[str, bool]]:
    info = archive.getinfo(entry)
    if info.file_size > MAX_VERIFIED_PAYLOAD:
        raise ArtifactLoadError(f"Entry '{entry}' of '{where}' is too large for a payload config.")
    try:
        document = json.loads(_read_entry(archive, entry, where))
    except ValueError as exc:  # not JSON, or not UTF-8
        raise _invalid_config(where, entry, str(exc)) from exc
    config = document.get("config", {}) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise _invalid_config(where, entry, "no 'config' object")
    payloads = []
    for key, meta in config.items():
        if not isinstance(meta, dict) or "path_name" not in meta:
            raise _invalid_config(where, entry, f"entry {key!r} has no 'path_name'")
        payloads.append((str(meta["path_name"]), bool(meta.get("use_pickle"))))
    return payloads


#: What ``ZipFile.read`` raises for a damaged entry: a bad CRC or header (``BadZipFile``), corrupt deflate data
#: (``zlib.error``), a short file (``EOFError``), the "encrypted" flag (``RuntimeError``: password required) or an
#: unknown compression method (``NotImplementedError``).
_ZIP_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError,
)  # fmt: skip


def _read_entry(archive: zipfile.ZipFile, entry: str, where: str) -> bytes:
    """The bytes of ``entry``; a damaged entry is an :class:`ArtifactLoadError` naming the archive."""
    try:
        return archive.read(entry)
    except _ZIP_READ_ERRORS as exc:
        raise ArtifactLoadError(
            f"Cannot read entry '{entry}' of '{where}': {type(exc).__name__}: {exc}.",
            hint="The archive is damaged; save or download it again.",
        ) from exc


def _invalid_config(where: str, entry: str, reason: str) -> ArtifactLoadError:
    return ArtifactLoadError(
        f"Cannot read '{where}': its payload config '{entry}' is not valid ({reason}).",
        hint="Save the ExportedProgram again with torch.export.save.",
    )


def _check_exported_payloads(archive: zipfile.ZipFile, where: str) -> None:
    for entry, how in _pickled_payloads(archive, where):
        label = f"'{entry}' of '{where}'"
        if how in ("object", "code"):
            what = "a pickled Python object" if how == "object" else "compiled native code (AOTInductor)"
            raise UntrustedPickleError(
                f"Cannot read {label} safely: it is {what}, and loading it can run arbitrary code.",
                hint=_HINT_PICKLE,
            )
        if archive.getinfo(entry).file_size > MAX_VERIFIED_PAYLOAD:
            raise UntrustedPickleError(
                f"Cannot verify {label}: the pickled payload is larger than {MAX_VERIFIED_PAYLOAD} bytes.",
                hint=_HINT_PICKLE,
            )
        _verify_weights_only(_read_entry(archive, entry, where), label)


def _verify_weights_only(data: bytes, label: str) -> None:
    """Unpickle ``data`` with torch's restricted unpickler (no code runs); refuse what it refuses."""
    import pickle

    import torch

    from mlm_export.adapters.torch.boundary import TORCH_LOAD_ERRORS

    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as nested:
            check_zip_entries(nested, len(data), label)
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = weights_only_reason(exc)
        raise UntrustedPickleError(
            f"Cannot read {label} safely: torch.export.load would unpickle it with weights_only=False, and it holds "
            f"Python objects that are not tensors ({reason}); unpickling them can run arbitrary code.",
            hint=_HINT_PICKLE,
        ) from exc
    except TORCH_LOAD_ERRORS as exc:  # a corrupt payload (see TORCH_LOAD_ERRORS for why KeyError etc. are here)
        raise ArtifactLoadError(
            f"Cannot read {label}: {weights_only_reason(exc)}", hint="Save the file again."
        ) from exc


def weights_only_reason(exc: BaseException, limit: int = 200) -> str:
    """The line of a torch (weights-only) load error that says why: the refused ``GLOBAL`` or ``Unsupported`` opcode.

    torch's message opens with paragraphs about ``weights_only``; the reason is a later line. Else the first line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text: Any = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0] if lines else "")
    return text[:limit]
