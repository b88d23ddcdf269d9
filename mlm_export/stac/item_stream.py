"""Model Items one at a time from Item files, folders of Items, catalogs, dicts or pystac Items (nothing is kept).

:func:`item_entries` reads what :func:`mlm_export.stac.publish.publish` (``mlm-export publish``) is given, lazily:

- a folder with a ``collection.json`` / ``catalog.json``, or such a file: the catalog's Items, through its ``item``
  and ``child`` links, confined to the catalog's directory (:func:`~mlm_export.stac.entries.catalog_entries`);
- any other folder: every ``*.json`` below it in sorted order (hidden and symlinked folders are not entered, a file
  resolving outside the folder is skipped with a warning, a symlink to a file of the folder is read once). JSON that
  is not a model Item (a Collection, a plain GeoJSON Feature, an unreadable file) is skipped and named in one
  warning at the end; a folder without any model Item is an error;
- an Item file, a dict or a ``pystac.Item``: that Item (one that is not a model Item is an error).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlm_export.errors import ConfigurationError
from mlm_export.stac.entries import (
    CATALOG_FILE,
    COLLECTION_FILE,
    Entry,
    ItemSource,
    _Confinement,
    _json_files,
    catalog_entries,
    check_model_item,
    read_entry,
)
from mlm_export.stac.validate import read_json_object

logger = logging.getLogger(__name__)
#: Skipped files named in a folder's warning.
_SHOWN_SKIPPED = 5
_CATALOG_TYPES = ("Collection", "Catalog")
_CACHED_FOLDERS = 256


def item_entries(items: Iterable[ItemSource] | ItemSource) -> Iterator[Entry]:
    """The model Items of ``items`` (one source or an iterable of them, consumed lazily), one at a time.

    Raises:
        ConfigurationError: a missing file, a file or object that is not a model Item, a folder without any, a
            catalog that links a missing Item.
    """
    bases: dict[str, Path] = {}
    for item in [items] if is_item_source(items) else items:  # type: ignore[list-item,union-attr]
        if not isinstance(item, (str, os.PathLike)):
            yield read_entry(item, copy_dict=False)  # never modified
            continue
        path = Path(item)
        if path.is_dir():
            top = next((path / name for name in (COLLECTION_FILE, CATALOG_FILE) if (path / name).is_file()), None)
            yield from folder_entries(path) if top is None else _catalog(top)
            continue
        document = read_json_object(path, "Item file", ConfigurationError)
        if document.get("type") in _CATALOG_TYPES:
            yield from _catalog(path)
            continue
        check_model_item(document, f"'{path}'")
        yield Entry(document, f"'{path}'", _real_folder(path, bases), str(path))


def _catalog(path: Path) -> Iterator[Entry]:
    """The catalog's Items, each with the real path of its directory as ``base`` (what validation resolves)."""
    bases: dict[str, Path] = {}
    for entry in catalog_entries(path, set()):
        check_model_item(entry.document, entry.source)
        yield Entry(entry.document, entry.source, _real_folder(str(entry.href), bases), entry.href)


def folder_entries(directory: Path) -> Iterator[Entry]:
    """The model Items among the ``*.json`` files below ``directory``, one at a time (see the module's text).

    Raises:
        ConfigurationError: the folder holds no model Item (raised once every file was read).
    """
    confinement = _Confinement(directory)
    bases: dict[str, Path] = {}  # real path of each folder, computed once
    skipped: list[str] = []
    count = found = 0
    for path in _json_files(directory, confinement):
        if _links_inside(path, confinement.root):
            continue  # read as the file it points at
        base = _real_folder(path, bases)
        try:
            document = read_json_object(path, "Item file", ConfigurationError)
            check_model_item(document, f"'{path}'")
        except ConfigurationError as exc:
            count += 1
            if len(skipped) < _SHOWN_SKIPPED:
                skipped.append(f"{path.relative_to(directory).as_posix()} ({str(exc).split(':', 1)[-1].strip()})")
            continue
        found += 1
        yield Entry(document, f"'{path}'", base, str(path))
    if count:
        more = f"; and {count - len(skipped)} more" if count > len(skipped) else ""
        logger.warning("'%s': %d JSON file(s) that are not model Items skipped: %s%s", directory, count,
                       "; ".join(skipped), more)  # fmt: skip
    if not found:
        raise ConfigurationError(
            f"'{directory}' holds no model Item: no {COLLECTION_FILE} or {CATALOG_FILE}, and none of its "
            f"{count} JSON file(s) is a STAC Item that declares MLM.",
            hint="Pass a folder of Item files written by mlm-export export, or a catalog built by mlm-export catalog.",
        )


def _real_folder(path: str | os.PathLike[str], bases: dict[str, Path]) -> Path:
    """The real directory of ``path`` (symlinks resolved, a symlinked file's target's), cached in ``bases``.

    The cache is bounded (a catalog has one folder per Item): memory stays flat.
    """
    if os.path.islink(path):
        return Path(os.path.realpath(path)).parent
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in bases and len(bases) >= _CACHED_FOLDERS:
        bases.clear()
    return bases.get(folder) or bases.setdefault(folder, Path(os.path.realpath(folder)))


def _links_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is a symlink to a ``*.json`` file the walk of ``root`` reads itself (no hidden part)."""
    if not os.path.islink(path):
        return False
    relative = Path(os.path.realpath(path)).relative_to(root)
    return relative.suffix == ".json" and not any(part.startswith(".") for part in relative.parts)


def is_item_source(value: Any) -> bool:
    """Whether ``value`` is one Item source rather than an iterable of them."""
    return isinstance(value, (str, os.PathLike, Mapping)) or hasattr(value, "to_dict")
