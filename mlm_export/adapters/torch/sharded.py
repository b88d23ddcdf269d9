"""Sharded Hugging Face checkpoints: ``model.safetensors.index.json`` + ``model-0000k-of-0000n.safetensors``.

The index (and the ``pytorch_model.bin.index.json`` + ``.bin`` equivalent) is one source. Before anything is
loaded, the index is checked against the directory and against every shard's own tensor list: a shard the index
names that is missing, a shard file of the set the index does not name, or a tensor listed under another shard
than the one holding it is an :class:`~mlm_export.errors.ArtifactLoadError`. Parameters are counted from the
safetensors headers (``.bin`` shards: memory-mapped ``torch.load``, which reads no tensor data). Every shard is its
own asset (roles ``mlm:model`` + ``mlm:weights``, with ``mlm:artifact_type``), hashed in parallel (one thread per
core; hashlib releases the GIL), and the index is an asset too (``metadata``, key :data:`INDEX_KEY`).

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mlm_export.adapters.torch.boundary import SAFETENSORS_ERRORS, SHARD_ERRORS, TORCH_LOAD_ERRORS, _loading
from mlm_export.adapters.torch.formats import _FORMATS
from mlm_export.description import Artifact
from mlm_export.errors import ArtifactLoadError, ArtifactNotFoundError
from mlm_export.hashing import FileDigest, hash_file

#: Index file suffix -> format of its shards.
INDEX_SUFFIXES: dict[str, str] = {".safetensors.index.json": "safetensors", ".bin.index.json": "torch.save"}
#: Asset key of the index file.
INDEX_KEY = "weights-index"
#: The largest index read (a real one lists tensor names only: a few MB at most).
MAX_INDEX_BYTES = 64 * 2**20
_SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<k>\d+)-of-(?P<n>\d+)\.(?P<ext>safetensors|bin)$")


def is_shard_index(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a sharded-checkpoint index (``*.safetensors.index.json``, ``*.bin.index.json``)."""
    return str(path).lower().endswith(tuple(INDEX_SUFFIXES))


@dataclass(frozen=True)
class ShardedCheckpoint:
    """A checked index: its shards (in order), which tensor lives where, and every tensor's shape and dtype."""

    index: Path
    fmt: str
    shards: tuple[Path, ...]
    weight_map: dict[str, str]
    header: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)

    @property
    def total_parameters(self) -> int:
        """Elements of every tensor, from the headers."""
        return sum(math.prod(shape) for shape, _ in self.header.values())


def _problem(index: Path, message: str, hint: str = "Re-save the checkpoint (save_pretrained).") -> ArtifactLoadError:
    return ArtifactLoadError(f"Sharded checkpoint '{index}': {message}", hint=hint)


def _read_index(index: Path) -> dict[str, str]:
    if not index.is_file():
        raise ArtifactNotFoundError(f"Index '{index}' does not exist.", hint="Check the path.")
    if index.stat().st_size > MAX_INDEX_BYTES:
        raise _problem(index, f"the index is over {MAX_INDEX_BYTES} bytes.")
    try:
        document = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _problem(index, f"the index is not JSON ({exc}).") from exc
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise _problem(index, "the index has no 'weight_map' of tensor name -> shard file.")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or Path(shard).name != shard or shard in (".", ".."):
            raise _problem(index, f"tensor {name!r} is mapped to {shard!r}, not a file name in the index's folder.")
    return weight_map


def _siblings(index: Path, listed: set[str], fmt: str) -> list[str]:
    """Shard files of the same set (``<stem>-k-of-n.<ext>``) in the index's folder that the index does not list."""
    patterns = {(m["stem"], m["n"], m["ext"]) for m in map(_SHARD_NAME.match, listed) if m}
    extension = "safetensors" if fmt == "safetensors" else "bin"
    unlisted = []
    for entry in sorted(os.listdir(index.parent)):
        match = _SHARD_NAME.match(entry)
        if (
            match
            and entry not in listed
            and match["ext"] == extension
            and ((match["stem"], match["n"], match["ext"]) in patterns)
        ):
            unlisted.append(entry)
    return unlisted


def _shard_header(path: Path, fmt: str) -> dict[str, tuple[tuple[int, ...], str]]:
    if fmt == "safetensors":
        with (
            _loading(path, "a safetensors shard", SAFETENSORS_ERRORS),
            safe_open(str(path), framework="numpy") as handle,
        ):
            return {
                key: (tuple(handle.get_slice(key).get_shape()), str(handle.get_slice(key).get_dtype()))
                for key in handle.keys()
            }
    with _loading(path, "a .bin shard", TORCH_LOAD_ERRORS):
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, dict):
        raise ArtifactLoadError(f"Shard '{path}' holds a {type(state).__name__}, not a state dict.")
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items() if torch.is_tensor(v)}


def read_sharded(index: str | os.PathLike[str], *, check: Callable[[Path], None] | None = None) -> ShardedCheckpoint:
    """Check an index against its folder and its shards' headers (no tensor data is read).

    ``check`` runs on every ``.bin`` shard before ``torch.load`` sees it (the adapter's archive/pickle scan).

    Raises:
        ArtifactNotFoundError: the index, or a shard it lists, does not exist.
        ArtifactLoadError: malformed index, unlisted shard of the set, or tensors that disagree with the headers.
    """
    index = Path(index)
    fmt = next(f for suffix, f in INDEX_SUFFIXES.items() if index.name.lower().endswith(suffix))
    weight_map = _read_index(index)
    names = sorted(set(weight_map.values()))
    missing = [n for n in names if not (index.parent / n).is_file()]
    if missing:
        raise ArtifactNotFoundError(
            f"Sharded checkpoint '{index}': shard(s) {', '.join(missing)} listed in the index do not exist.",
            hint="Download every shard next to the index.",
        )
    unlisted = _siblings(index, set(names), fmt)
    if unlisted:
        raise _problem(index, f"shard(s) {', '.join(unlisted)} are in the folder but not in the index.")
    shards = tuple(index.parent / n for n in names)
    header: dict[str, tuple[tuple[int, ...], str]] = {}
    for shard in shards:
        if check is not None and fmt != "safetensors":
            check(shard)
        held = _shard_header(shard, fmt)
        listed = {k for k, v in weight_map.items() if v == shard.name}
        if held.keys() != listed:
            extra, absent = sorted(held.keys() - listed)[:5], sorted(listed - held.keys())[:5]
            raise _problem(
                index,
                f"the index disagrees with the header of '{shard.name}': in the shard but not listed for it "
                f"{extra}, listed for it but not in the shard {absent}.",
            )
        header.update(held)
    return ShardedCheckpoint(index, fmt, shards, dict(weight_map), header)


def hash_in_parallel(paths: tuple[Path, ...], workers: int | None = None) -> dict[Path, FileDigest]:
    """The sha2-256 multihash of every file, one thread per core this process may use.

    Each thread reads its file into one preallocated 1 MiB buffer (:func:`mlm_export.hashing.hash_file`) and
    hashlib releases the GIL for every update of 2 KiB or more, so the threads hash concurrently.
    """
    workers = workers or min(len(paths), _usable_cores()) or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlm-export-shard") as pool:
        digests = pool.map(lambda p: hash_file(p, progress=False), paths)
        return dict(zip(paths, digests, strict=True))


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, else ``os.cpu_count()``)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def with_parallel_digests(artifacts: list[Artifact]) -> list[Artifact]:
    """``artifacts`` with ``file:size``/``file:checksum`` filled, their files hashed in parallel."""
    todo = tuple(Path(a.path) for a in artifacts if a.path is not None and a.file_checksum is None)
    digests = hash_in_parallel(todo) if todo else {}
    return [
        replace(a, file_size=digests[Path(a.path)].size, file_checksum=digests[Path(a.path)].checksum)
        if a.path is not None and Path(a.path) in digests
        else a
        for a in artifacts
    ]


def shard_artifacts(checkpoint: ShardedCheckpoint) -> list[Artifact]:
    """One asset per shard (``mlm:model`` + ``mlm:weights``) and one for the index (not hashed yet)."""
    info = _FORMATS[checkpoint.fmt]
    count = len(checkpoint.shards)
    artifacts = []
    for number, shard in enumerate(checkpoint.shards, start=1):
        artifacts.append(
            Artifact(
                key=shard.name.rsplit(".", 1)[0],
                roles=info.roles,
                path=str(shard),
                artifact_type=info.artifact_type,
                media_type=info.media_type,
                title=f"{shard.name}: shard {number} of {count} ({info.title})",
            )
        )
    artifacts.append(
        Artifact(
            key=INDEX_KEY,
            roles=("metadata",),
            path=str(checkpoint.index),
            media_type="application/json",
            title=f"{checkpoint.index.name}: which shard holds each tensor",
        )
    )
    return artifacts


def state_dict_loader(checkpoint: ShardedCheckpoint) -> Callable[[], dict[str, Any]]:
    """A function that loads every shard into one state dict (``weights_only`` for ``.bin``)."""

    def load() -> dict[str, Any]:
        state: dict[str, Any] = {}
        for shard in checkpoint.shards:
            with _loading(shard, "a checkpoint shard", SHARD_ERRORS):
                if checkpoint.fmt == "safetensors":
                    state.update(load_file(str(shard), device="cpu"))
                else:
                    state.update(torch.load(shard, map_location="cpu", weights_only=True, mmap=True))
        return state

    return load


__all__ = [
    "INDEX_KEY",
    "INDEX_SUFFIXES",
    "ShardedCheckpoint",
    "hash_in_parallel",
    "is_shard_index",
    "read_sharded",
    "shard_artifacts",
    "state_dict_loader",
    "with_parallel_digests",
]
