"""The files one model needs, together: which assets form the set, their layout, and its directory in the cache.

A model may need more than its ``mlm:model`` file: an ONNX model whose weights sit in external data
(``model.onnx.data``, an asset with role ``mlm:weights`` and no ``mlm:model`` role) or a sharded checkpoint (the
index asset :data:`SHARD_INDEX_KEY` plus one ``mlm:model`` asset per shard). Loaders find those files by name next to
the main one, while the content-addressed cache names each file by its checksum. So after every member is verified
into the cache, :func:`materialise` builds a per-set directory of hard links named as the Item's hrefs name them
(their layout relative to the main file), created in a temporary directory and renamed into place atomically, and
rebuilt whenever a name no longer points at its verified cache entry. Names come from the Item's hrefs only, each
checked to be a plain relative path below the main file's directory; nothing is trusted because of its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlm_export.errors import ItemValidationError, OutputError

#: Asset key of a sharded checkpoint's index (:mod:`mlm_export.adapters.torch.sharded`).
SHARD_INDEX_KEY = "weights-index"
#: Sub-directory of the artifact cache that holds the per-set directories.
SETS_DIR = "sets"


def member_keys(assets: Mapping[str, Any], main_key: str) -> tuple[str, list[str]]:
    """The key of the file the loader opens and the keys of every asset of the set (that one first).

    - a sharded checkpoint (an asset :data:`SHARD_INDEX_KEY`): the index is opened; every ``mlm:model`` asset is a
      shard;
    - an ONNX model (``mlm:artifact_type`` ``onnx``): its external-data files are the ``mlm:weights`` assets that
      are not ``mlm:model`` assets themselves;
    - anything else: the model file alone.
    """
    main = assets[main_key]
    if isinstance(assets.get(SHARD_INDEX_KEY), Mapping):
        shards = [k for k, a in assets.items() if isinstance(a, Mapping) and "mlm:model" in (a.get("roles") or [])]
        return SHARD_INDEX_KEY, [SHARD_INDEX_KEY, *shards]
    if main.get("mlm:artifact_type") == "onnx":
        data = [
            k
            for k, a in assets.items()
            if k != main_key and isinstance(a, Mapping) and _is_external_data(a.get("roles") or [])
        ]
        return main_key, [main_key, *data]
    return main_key, [main_key]


def _is_external_data(roles: Sequence[str]) -> bool:
    return "mlm:weights" in roles and "mlm:model" not in roles


def layout(hrefs: Mapping[str, str], main_key: str) -> dict[str, str]:
    """Each member's path relative to the main file's directory, from absolute hrefs (URLs or local paths).

    Raises:
        ItemValidationError: a member does not lie in or below the main file's directory (another host, ``..``,
            an encoded ``/``), or two members share a name.
    """
    main = _split(hrefs[main_key])
    directory = posixpath.dirname(main[1])
    names: dict[str, str] = {}
    for key, href in hrefs.items():
        origin, path = _split(href)
        inside = path.startswith(directory.rstrip("/") + "/")
        relative = posixpath.relpath(path, directory) if inside else None
        parts = relative.split("/") if relative is not None and origin == main[0] else []
        if not parts or any(not _plain(unquote(p)) for p in parts):
            raise ItemValidationError(
                f"Asset {key!r} ({href}) does not lie in or below the directory of asset {main_key!r} "
                f"({hrefs[main_key]}); the model reads its files side by side, by name.",
                hint="Publish the model's files together (same directory), as they were written.",
            )
        names[key] = "/".join(unquote(p) for p in parts)
    if len(set(names.values())) != len(names):
        raise ItemValidationError(f"Assets {sorted(hrefs)} name the same file twice.", hint="Fix the Item's hrefs.")
    return names


def _split(href: str) -> tuple[str, str]:
    parsed = urlparse(href)
    if parsed.scheme in ("", "file"):
        return "file://", posixpath.normpath(Path(unquote(parsed.path) if parsed.scheme else href).as_posix())
    return f"{parsed.scheme}://{parsed.netloc}", posixpath.normpath(parsed.path)


def _plain(part: str) -> bool:
    return part not in ("", ".", "..") and not any(c in part for c in "/\\\0") and len(part) <= 255


def in_place(files: Mapping[str, Path], names: Mapping[str, str], main_key: str) -> bool:
    """Whether the files already sit in the layout (each member at its name next to the main file)."""
    directory = files[main_key].parent
    for key, path in files.items():
        candidate = directory / names[key]
        with contextlib.suppress(OSError):
            if os.path.samefile(candidate, path):
                continue
        return False
    return True


def materialise(
    files: Mapping[str, Path], names: Mapping[str, str], checksums: Mapping[str, str], cache_dir: Path
) -> dict[str, Path]:
    """A directory of hard links to ``files`` (verified cache entries) under ``names``; each member's path in it.

    The directory is ``<cache_dir>/sets/<digest of names and checksums>``. It is built in a temporary directory and
    renamed into place; an existing one is reused only when every name is the very file (same inode) handed in,
    else it is replaced. A file that cannot be hard-linked (another filesystem) is copied.

    Raises:
        OutputError: the cache cannot be written.
    """
    digest = hashlib.sha256(
        "\n".join(f"{names[k]}\0{checksums[k]}" for k in sorted(names)).encode("utf-8")
    ).hexdigest()[:32]
    root = cache_dir / SETS_DIR
    final = root / digest
    paths = {key: final / names[key] for key in names}
    if _complete(paths, files):
        return paths
    try:
        root.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}.", suffix=".tmp", dir=root))
        try:
            for key, source in files.items():
                _link(source, temp / names[key])
            _publish(temp, final)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot build the artifact set '{final}': {exc.strerror or exc}.",
            hint="Free space or set $MLM_EXPORT_CACHE_DIR to a writable directory.",
        ) from exc
    if not _complete(paths, files, copies_allowed=True):  # a concurrent process may have published it first
        raise OutputError(f"The artifact set '{final}' changed while it was built.", hint="Try again.")
    return paths


def _complete(paths: Mapping[str, Path], files: Mapping[str, Path], *, copies_allowed: bool = False) -> bool:
    """Whether every name is the file handed in (a copy of the same size right after a build on another fs)."""
    try:
        return all(
            os.path.samefile(paths[k], files[k])
            or (copies_allowed and paths[k].stat().st_size == files[k].stat().st_size)
            for k in paths
        )
    except OSError:
        return False


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _publish(temp: Path, final: Path) -> None:
    """Rename ``temp`` to ``final``; a stale ``final`` is moved aside (then removed) first."""
    try:
        os.rename(temp, final)
        return
    except OSError:
        if not final.exists():
            raise
    stale = Path(tempfile.mkdtemp(prefix=f".{final.name[:12]}.", suffix=".stale", dir=final.parent))
    try:
        os.rename(final, stale / "set")
        os.rename(temp, final)
    except OSError:
        if not final.exists():
            raise
    finally:
        shutil.rmtree(stale, ignore_errors=True)


__all__ = ["SHARD_INDEX_KEY", "in_place", "layout", "materialise", "member_keys"]
