"""Write a safetensors file and hash it in the same pass: the bytes ``safetensors.torch.save_file`` writes.

An in-memory module becomes a safetensors file that the Item must checksum. Writing it with ``save_file`` and then
hashing it reads the whole file back (and ``save_file`` writes through a temporary file whose timing varies by a
factor of ten); here each tensor's memory goes to the file and to SHA2-256 at once, the two overlapped in two
threads (``os.write`` and ``hashlib`` both release the GIL on large buffers), so the file is never read.

The header is what safetensors' Rust ``prepare`` writes: the tensors sorted by dtype (descending, in the order of
its ``Dtype`` enum) then by name, laid out back to back; the JSON map ``__metadata__`` first, then each tensor as
``{"dtype","shape","data_offsets"}``, compact, non-ASCII kept as UTF-8; padded with spaces to a multiple of 8 bytes
and preceded by its length (8 bytes, little-endian). The file is byte-identical to ``save_file``'s with up to one
metadata key (the default ``{"format": "pt"}``); safetensors writes several keys in a random (hash map) order,
here they are sorted, so the same model always gives the same checksum.

:func:`write_hashed` returns None for what it does not know (a dtype outside :data:`DTYPES`): the caller then uses
``save_file`` and hashes the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlm_export.hashing import FileDigest, multihash_sha256

#: torch dtype name -> (safetensors header name, rank in safetensors' ``Dtype`` enum: files sort by it, descending).
DTYPES: dict[str, tuple[str, int]] = {
    "bool": ("BOOL", 0),
    "uint8": ("U8", 4),
    "int8": ("I8", 5),
    "float8_e5m2": ("F8_E5M2", 6),
    "float8_e4m3fn": ("F8_E4M3", 7),
    "float8_e8m0fnu": ("F8_E8M0", 8),
    "float8_e4m3fnuz": ("F8_E4M3FNUZ", 9),
    "float8_e5m2fnuz": ("F8_E5M2FNUZ", 10),
    "int16": ("I16", 11),
    "uint16": ("U16", 12),
    "float16": ("F16", 13),
    "bfloat16": ("BF16", 14),
    "int32": ("I32", 15),
    "uint32": ("U32", 16),
    "float32": ("F32", 17),
    "complex64": ("C64", 18),
    "float64": ("F64", 19),
    "int64": ("I64", 20),
    "uint64": ("U64", 21),
}
#: Bytes per write and per hash update: large enough that the GIL is rarely taken (a thread waits up to the switch
#: interval for it while the main thread runs Python), small enough that writing and hashing overlap.
CHUNK = 32 * 1024 * 1024


class Cancelled(Exception):
    """An :class:`EarlyWrite` was discarded while it ran."""


def header(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None) -> tuple[bytes, list[Any]] | None:
    """The first bytes of the file (length + padded JSON header) and the tensors in file order.

    None for what :func:`write_hashed` leaves to ``save_file``: a dtype outside :data:`DTYPES`, a tensor that is not
    a dense, contiguous CPU ``torch.Tensor`` (not a subclass); ``save_file`` writes it or says what is wrong.
    """
    entries = []
    for name, tensor in tensors.items():
        known = DTYPES.get(str(getattr(tensor, "dtype", "")).removeprefix("torch."))
        if known is None or not _plain(tensor):
            return None
        entries.append((known, name, tensor))
    entries.sort(key=lambda entry: (-entry[0][1], entry[1]))
    document: dict[str, Any] = {}
    if metadata is not None:
        document["__metadata__"] = {key: metadata[key] for key in sorted(metadata)}
    offset = 0
    for (dtype, _rank), name, tensor in entries:
        size = tensor.numel() * tensor.element_size()
        document[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    try:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in a name: safetensors refuses it, let it say so
        return None
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, [tensor for _known, _name, tensor in entries]


def _plain(tensor: Any) -> bool:
    import torch

    return (  # tensor subclasses (quantized, distributed...) are left to save_file
        type(tensor) in (torch.Tensor, torch.nn.Parameter) and tensor.layout == torch.strided
        and tensor.device.type == "cpu" and tensor.is_contiguous()
    )  # fmt: skip


def _bytes_of(tensor: Any) -> memoryview:
    """The tensor's memory as bytes, without a copy."""
    import torch

    return memoryview(tensor.detach().reshape(-1).view(torch.uint8).numpy()).cast("B")


def write_hashed(
    tensors: Mapping[str, Any], path: Path, metadata: Mapping[str, str] | None, *, stop: threading.Event | None = None
) -> FileDigest | None:
    """Write ``tensors`` to ``path`` (a new file) as safetensors and return its digest; None: unknown dtype.

    Raises:
        OSError: the file could not be written (nothing is left at ``path``).
        FileExistsError: ``path`` exists.
        Cancelled: ``stop`` was set (nothing is left at ``path``).
    """
    prepared = header(tensors, metadata)
    if prepared is None:
        return None
    first, ordered = prepared
    digest = hashlib.sha256()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            size = _write_and_hash(descriptor, _chunks(first, ordered, stop), digest)
        finally:
            os.close(descriptor)
    except BaseException:
        _remove(path)  # no partial file
        raise
    return FileDigest(path, size, multihash_sha256(digest.digest()))


def _write_and_hash(descriptor: int, chunks: Iterator[memoryview], digest: Any) -> int:
    """Write each chunk while a second thread hashes it (updates in order: one worker); the number of bytes."""
    size = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlm-export-hash-write") as hasher:
        pending: deque[Future[None]] = deque()
        try:
            for chunk in chunks:
                pending.append(hasher.submit(digest.update, chunk))
                _write_all(descriptor, chunk)
                size += len(chunk)
                while pending and pending[0].done():
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return size


def _chunks(first: bytes, ordered: list[Any], stop: threading.Event | None = None) -> Iterator[memoryview]:
    yield memoryview(first)
    for tensor in ordered:
        if not tensor.numel():
            continue
        data = _bytes_of(tensor)
        for start in range(0, len(data), CHUNK):
            if stop is not None and stop.is_set():
                raise Cancelled("The early safetensors write was cancelled.")
            yield data[start : start + CHUNK]


def _write_all(descriptor: int, chunk: memoryview) -> None:
    while chunk:
        written = os.write(descriptor, chunk)
        chunk = chunk[written:]


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def snapshot(state: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What identifies each tensor's values: its memory, layout and version (bumped by every in-place change).

    Raises:
        RuntimeError: an inference tensor (made under ``torch.inference_mode``): it has no version counter.
    """
    if any(t.is_inference() for t in state.values()):  # their version stays 0 whatever changes them
        raise RuntimeError("Inference tensors have no version counter.")
    return {
        name: (t.data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype, t._version)
        for name, t in state.items()
    }


class EarlyWrite:
    """Write and hash a module's safetensors file in a thread while the dry-run runs; use it if nothing changed.

    The file is written under a temporary name in ``directory`` (the staging directory, removed with it) from the
    module's state when it is made (:func:`snapshot` raises ``RuntimeError`` for inference tensors, which have no
    version counter: the caller then writes no early file). :meth:`take` keeps it only if every state tensor still
    has the same memory, layout and version counter (in-place changes bump it: a forward that updates a buffer, a
    move to a device) and the metadata is the same; otherwise the file is dropped and the caller writes it again.
    """

    def __init__(self, state: Mapping[str, Any], tensors: Mapping[str, Any], directory: Path, metadata: dict) -> None:
        self._snapshot = snapshot(state)
        self._metadata = dict(metadata)
        self._path = directory / f".early-{uuid.uuid4().hex}.safetensors"
        self._stop = threading.Event()
        self._result: FileDigest | BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(tensors,), name="mlm-export-early-write", daemon=True)
        self._thread.start()

    def _run(self, tensors: Mapping[str, Any]) -> None:
        try:
            self._result = write_hashed(tensors, self._path, self._metadata, stop=self._stop)
        except BaseException as exc:  # noqa: BLE001 - handed to take(), which then writes the file itself
            self._result = exc

    def take(self, state: Mapping[str, Any], metadata: Mapping[str, str], path: Path) -> FileDigest | None:
        """The digest of the file, renamed to ``path``, if it is still what the module holds; else None."""
        self._thread.join()
        result = self._result
        if not isinstance(result, FileDigest):
            return None
        try:
            same = snapshot(state) == self._snapshot and dict(metadata) == self._metadata
        except RuntimeError:  # a tensor became an inference tensor
            same = False
        if not same:
            _remove(self._path)
            return None
        os.rename(self._path, path)
        return FileDigest(path, result.size, result.checksum)

    def discard(self) -> None:
        """Stop the write and remove its file (an export that failed)."""
        self._stop.set()
        self._thread.join()
        _remove(self._path)
