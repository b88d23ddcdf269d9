"""``mlm-export get``: an Item and its verified artifacts copied into a directory for offline use.

The Item is fetched once (:func:`~mlm_export.transfer.fetch_item_document`) and its structure checked before any
artifact is requested; every asset with a ``file:checksum`` comes through the verified cache
(:func:`~mlm_export.transfer.fetch_artifact`, bounded by :class:`~mlm_export.download_limits.DownloadLimits`) and is
hashed again while it is copied to the output directory, so the bytes written are the bytes the Item names. Files are
written to a locked ``.<name>.<random>.part`` and renamed; the leftovers of killed runs are removed by the next one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlm_export.artifact_cache import multihash_of, new_hasher, part_file, remove_leftovers
from mlm_export.download_limits import DownloadLimits
from mlm_export.errors import ChecksumMismatchError, OutputExistsError
from mlm_export.hashing import BUFFER_SIZE, hash_file
from mlm_export.transfer import fetch_artifact, fetch_item_document, is_remote, resolve_href, self_url


def download_item(
    url: str,
    output_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    limits: DownloadLimits | None = None,
) -> Path:
    """Download the Item at ``url`` and its verified artifacts into ``output_dir`` for offline use.

    Every asset with a ``file:checksum`` is fetched (through the cache, verified) and written next to the Item
    under its file name, its href made relative; other hrefs are made absolute so they still resolve.

    ``limits`` bound each transfer (the Item's and every artifact's), as in :func:`fetch_artifact`.

    Returns:
        The path of the written Item JSON (``<output_dir>/<id>.json``).

    Raises:
        ItemValidationError: the Item is malformed (``assets`` not an object of objects, a ``file:size`` that is
            not an integer, a ``file:checksum`` that is not a string...).
        OutputExistsError: a file to write exists with other bytes and ``overwrite`` is false.
        ChecksumMismatchError: an artifact changed between its verification and its copy into ``output_dir``.
        MLMExportError: as :func:`fetch_artifact` and :func:`fetch_item_document`.
    """
    from mlm_export.stac.io import require_structure

    document = fetch_item_document(url, limits=limits)
    require_structure(document, f"Item '{url}'")
    base = self_url(document) or url
    directory = Path(output_dir)
    item_path = directory / f"{_safe_name(str(document.get('id') or 'item'))}.json"
    if item_path.exists() and not overwrite:
        raise OutputExistsError(f"'{item_path}' exists.", hint="Pass --overwrite or choose another directory.")
    plan, used = [], {item_path.name}
    for key, asset in (document.get("assets") or {}).items():
        href = resolve_href(str(asset.get("href", "")), base)
        asset["href"] = href
        if is_remote(href) and asset.get("file:checksum"):
            name = _safe_name(Path(urlparse(href).path).name or key)
            name = name if name not in used else _safe_name(f"{key}-{name}")
            used.add(name)
            plan.append((asset, href, directory / name))
    fetched = [fetch_artifact(h, size=a.get("file:size"), checksum=a["file:checksum"], cache_dir=cache_dir,
                              progress=progress, limits=limits) for a, h, _ in plan]  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    for (asset, _, target), source in zip(plan, fetched, strict=True):
        _place(source, target, asset["file:checksum"], overwrite)
        asset["href"] = f"./{target.name}"
    document["links"] = [
        {**link, "href": resolve_href(str(link.get("href", "")), base)}
        for link in document.get("links") or []
        if isinstance(link, Mapping) and link.get("rel") != "self"
    ]
    _write_atomically(item_path, (json.dumps(document, indent=2) + "\n").encode())
    return item_path


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned or "artifact"


def _place(source: Path, target: Path, checksum: str, overwrite: bool) -> None:
    """Copy ``source`` to ``target``, hashing while copying, unless ``target`` already holds the same bytes.

    Raises:
        ChecksumMismatchError: the copied bytes are not ``checksum`` (``source`` changed since it was verified);
            nothing is written.
    """
    if target.exists():
        if hash_file(target).checksum == checksum:
            return
        if not overwrite:
            raise OutputExistsError(f"'{target}' exists with other bytes.", hint="Pass --overwrite.")
    hasher = new_hasher(checksum)
    buffer = bytearray(BUFFER_SIZE)
    view = memoryview(buffer)
    with _output_part(target) as (stream, temp), open(source, "rb", buffering=0) as reading:
        while count := reading.readinto(buffer):
            hasher.update(view[:count])
            written = 0
            while written < count:  # an unbuffered write may be short
                written += stream.write(view[written:count])
        actual = multihash_of(hasher, checksum)
        if actual != checksum:
            raise ChecksumMismatchError(
                f"'{source}' has checksum {actual} while being copied to '{target}', not the verified {checksum}; "
                "nothing was written.",
                hint="The cache entry changed after it was verified: run the command again.",
            )
        os.replace(temp, target)


def _write_atomically(path: Path, data: bytes) -> None:
    with _output_part(path) as (stream, temp):
        stream.write(data)
        os.replace(temp, path)


@contextmanager
def _output_part(target: Path) -> Iterator[tuple[Any, Path]]:
    """A locked ``.<name>.<random>.part`` beside ``target``, leftovers of killed runs for that name removed first."""
    from mlm_export.files import file_mode

    prefix = f".{target.name}."
    remove_leftovers(target.parent, prefix)
    with part_file(target.parent, prefix, mode=file_mode()) as result:
        yield result


__all__ = ["download_item"]
