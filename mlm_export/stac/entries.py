"""Model Item documents with where they came from, read from files, dicts, pystac objects or a catalog directory.

An :class:`Entry` keeps the Item JSON untouched together with a description of its origin (for messages) and the
directory its relative hrefs resolve against. :func:`entries_of` walks a catalog directory (``collection.json`` or
``catalog.json`` and its ``item``/``child`` links), a plain folder of Item files (every ``*.json`` below it; JSON
that is not a model Item is skipped with one warning), a Collection or Catalog file, a pystac Catalog, or a list of
Item files.

A catalog walked from a file stays inside the directory of its top file: an ``item`` or ``child`` link whose target
resolves (``..`` and symlinks followed) outside it, an absolute path elsewhere included, is skipped with a warning
and never opened, so one bad link neither leaks a file nor hides the other Items. A plain folder is read the same
way: symlinked folders are not entered and a file that resolves outside the folder is skipped with a warning.
"""

from __future__ import annotations

import copy
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pystac

from mlm_export.errors import ConfigurationError
from mlm_export.stac.builder import MLM_SCHEMA_URI
from mlm_export.stac.index import (
    INDEX_FILE,
    CatalogFile,
    Listed,
    Record,
    cached_links,
    extract,
    listed_of,
    listing_rel,
    racy,
    refresh,
    select,
    stat_listed,
    store_links,
)
from mlm_export.stac.index_folders import Folder, folder_mtime, keeper, select_by_folders, walk_key
from mlm_export.stac.io import decode_href, max_json_bytes
from mlm_export.stac.validate import read_json_object

if TYPE_CHECKING:
    from mlm_export.stac.matching import Query

logger = logging.getLogger(__name__)

COLLECTION_FILE = "collection.json"
CATALOG_FILE = "catalog.json"
#: Names of the skipped files listed in the warning of a plain folder.
_SHOWN_SKIPPED = 5
_MLM_PREFIXES = ("https://stac-extensions.github.io/mlm/", "https://crim-ca.github.io/mlm-extension/")

ItemSource = pystac.Item | Mapping[str, Any] | str | os.PathLike[str]


@dataclass(frozen=True)
class Entry:
    """One Item document with where it came from (``base``: directory its relative hrefs resolve against)."""

    document: dict[str, Any]
    source: str
    base: Path | None
    href: str | None = None


def is_url(href: str) -> bool:
    """Whether ``href`` is a URL with a scheme other than ``file`` (a one-letter scheme is a Windows drive)."""
    scheme = urlparse(href).scheme
    return len(scheme) > 1 and scheme != "file"


def check_model_item(document: Mapping[str, Any], source: str) -> None:
    """Raise :class:`ConfigurationError` unless ``document`` is a STAC Item that declares MLM."""
    kind = document.get("type")
    if kind != "Feature":
        raise ConfigurationError(
            f"{source} is not a STAC Item: its type is {kind!r}, not 'Feature'.",
            hint="Pass model Item JSON files (e.g. written by mlm-export export), not Collections or Catalogs.",
        )
    item_id = document.get("id")
    if not isinstance(item_id, str) or not isinstance(document.get("properties"), Mapping):
        raise ConfigurationError(f"{source} is not a STAC Item: it lacks a string 'id' or a 'properties' object.")
    extensions = document.get("stac_extensions") or []
    if not any(isinstance(u, str) and u.startswith(_MLM_PREFIXES) for u in extensions):
        raise ConfigurationError(
            f"{source} (item {item_id!r}) is not a model Item: it does not declare the MLM extension.",
            hint=f"Add {MLM_SCHEMA_URI} to stac_extensions, or export the model with mlm-export.",
        )


def read_entry(item: ItemSource, *, copy_dict: bool = True) -> Entry:
    """The model Item ``item`` (a path, dict or pystac.Item) as an :class:`Entry`.

    A dict is deep-copied unless ``copy_dict=False`` (for callers that never modify the document).
    """
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        document = read_json_object(path, "Item file", ConfigurationError)
        entry = Entry(document, f"'{path}'", path.resolve().parent, str(path))
    elif isinstance(item, pystac.Item):
        self_href = item.get_self_href()
        base = Path(self_href).resolve().parent if self_href and not is_url(self_href) else None
        document = item.to_dict(include_self_link=False, transform_hrefs=False)
        entry = Entry(document, f"item {item.id!r}", base, self_href)
    elif isinstance(item, Mapping):
        document = copy.deepcopy(dict(item)) if copy_dict else dict(item)
        entry = Entry(document, f"item {item.get('id')!r}", None)
    else:
        raise ConfigurationError(
            f"items: cannot use an object of type {type(item).__name__}.",
            hint="Pass pystac.Items, dicts or paths of Item JSON files.",
        )
    check_model_item(entry.document, entry.source)
    return entry


class _Confinement:
    """Whether paths resolve inside ``root`` (``..`` and symlinks followed).

    The real path of each directory is computed once: 1,000 Items in a few directories cost an lstat each.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._directories: dict[str, str] = {}

    def inside(self, path: Path) -> bool:
        text = os.path.abspath(path)
        directory, name = os.path.split(text)
        real_directory = self._directories.get(directory)
        if real_directory is None:
            real_directory = self._directories.setdefault(directory, os.path.realpath(directory))
        real = os.path.realpath(text) if os.path.islink(text) else os.path.join(real_directory, name)
        return Path(real).is_relative_to(self.root)


def catalog_targets(
    path: Path, seen: set[Path], confinement: _Confinement | None = None, notes: list[str] | None = None
) -> Iterator[tuple[Path, Path, Path]]:
    """(Item file, the directory its hrefs resolve against, the catalog file linking it) for every ``item`` link.

    ``child`` links are followed inside the directory of the first file; a link whose target resolves outside it is
    skipped with a warning (also appended to ``notes``), never opened.
    """
    confinement = confinement or _Confinement(path.resolve().parent)
    resolved = path.resolve()
    if resolved in seen:
        return
    seen.add(resolved)
    document = read_json_object(path, "Catalog file", ConfigurationError)
    if document.get("type") not in ("Collection", "Catalog"):
        raise ConfigurationError(
            f"'{path}' is not a STAC Collection or Catalog (type {document.get('type')!r}).",
            hint="Pass a catalog directory written by build_catalog (mlm-export catalog).",
        )
    parent, resolved_parent = os.path.dirname(path), os.path.dirname(resolved)
    for link in document.get("links") or []:
        if not isinstance(link, Mapping) or link.get("rel") not in ("item", "child"):
            continue
        href = str(link.get("href", ""))
        if is_url(href):
            raise ConfigurationError(
                f"'{path}' links {href!r}; only local catalogs can be searched.", hint="Download the catalog first."
            )
        href = decode_href(href)  # file:// stripped, percent-encoding decoded
        absolute = os.path.isabs(href)
        target = Path(href if absolute else os.path.normpath(os.path.join(parent, href)))
        if not confinement.inside(target):
            note = (f"'{path}' links the {link['rel']} {href!r}, which leads outside the catalog directory "
                    f"'{confinement.root}': skipped.")  # fmt: skip
            logger.warning("%s", note)
            if notes is not None:
                notes.append(note)
            continue
        if link["rel"] == "child":
            yield from catalog_targets(target, seen, confinement, notes)
            continue
        if not target.is_file():
            raise ConfigurationError(
                f"'{path}' links the item {href!r} but '{target}' does not exist.",
                hint="Rebuild the catalog (mlm-export catalog ... --overwrite).",
            )
        base = os.path.dirname(href if absolute else os.path.normpath(os.path.join(resolved_parent, href)))
        yield target, Path(base), path


def catalog_item(target: Path, base: Path, catalog: Path) -> Entry:
    """The Item file ``target`` linked from ``catalog`` as an :class:`Entry`.

    Raises:
        ConfigurationError: the file cannot be read (size cap, duplicate keys...) or is not a STAC Item.
    """
    document = read_json_object(target, "Item file", ConfigurationError)
    if document.get("type") != "Feature":
        raise ConfigurationError(f"'{target}', linked as an item from '{catalog}', is not a STAC Item.")
    return Entry(document, f"'{target}'", base, str(target))


def catalog_entries(path: Path, seen: set[Path], confinement: _Confinement | None = None) -> Iterator[Entry]:
    """Items linked from the Catalog/Collection file ``path``, following ``child`` links inside its directory.

    A link whose target resolves outside the directory of the first file is skipped with a warning, never opened.
    """
    for target, base, catalog in catalog_targets(path, seen, confinement):
        yield catalog_item(target, base, catalog)


def _json_files(directory: Path, confinement: _Confinement) -> Iterator[Path]:
    """``*.json`` files below ``directory`` in sorted order; hidden and symlinked folders are not entered."""
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if not name.endswith(".json") or name.startswith("."):
                continue
            if not confinement.inside(path):
                logger.warning("'%s' leads outside the folder '%s': skipped.", path, confinement.root)
                continue
            yield path


def _skip_note(path: Path, directory: Path, exc: ConfigurationError) -> str:
    return f"{path.relative_to(directory).as_posix()} ({_reason(exc)})"


def _reason(exc: ConfigurationError) -> str:
    return str(exc).split(":", 1)[-1].strip()


def _report_skipped(directory: Path, skipped: list[str], found: bool) -> None:
    """Warn about the JSON files that are not model Items; raise when the folder holds no model Item at all."""
    if skipped:
        shown = "; ".join(skipped[:_SHOWN_SKIPPED]) + (f"; and {len(skipped) - _SHOWN_SKIPPED} more"
                                                        if len(skipped) > _SHOWN_SKIPPED else "")  # fmt: skip
        logger.warning("'%s': %d JSON file(s) that are not model Items skipped: %s", directory, len(skipped), shown)
    if not found:
        raise ConfigurationError(
            f"'{directory}' holds no model Item: no {COLLECTION_FILE} or {CATALOG_FILE}, and none of its "
            f"{len(skipped)} JSON file(s) is a STAC Item that declares MLM.",
            hint="Pass a folder of Item files written by mlm-export export, or a catalog built by mlm-export catalog.",
        )


def folder_entries(directory: Path) -> list[Entry]:
    """The model Items among the ``*.json`` files below ``directory`` (a folder of Items, no catalog file).

    Other JSON (Collections, Catalogs, non-MLM Items, unreadable files) is skipped with one warning naming it.

    Raises:
        ConfigurationError: the folder holds no model Item.
    """
    entries: list[Entry] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for path in _json_files(directory, _Confinement(directory)):
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries.append(read_entry(path, copy_dict=False))
        except ConfigurationError as exc:
            skipped.append(_skip_note(path, directory, exc))
    _report_skipped(directory, skipped, bool(entries))
    return entries


def _scanned(
    folder: str, mtimes: list[Folder] | None = None, rel: str = ""
) -> tuple[list[str], list[os.DirEntry[str]]]:
    """(sorted names of the subfolders to enter, sorted ``*.json`` file entries) of ``folder``, as os.walk sorts.

    ``mtimes`` (when given) gets the folder's mtime, taken before it is listed.
    """
    if mtimes is not None:
        mtimes.append((rel, folder_mtime(folder) or -1))
    try:
        with os.scandir(folder) as scan:
            found = list(scan)
    except OSError:
        return [], []
    folders, files = [], []
    for entry in found:
        name = entry.name
        if name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if not entry.is_symlink():
                folders.append(name)
        elif name.endswith(".json"):
            files.append(entry)
    files.sort(key=_by_name)
    return sorted(folders), files


def _by_name(entry: os.DirEntry[str]) -> str:
    return entry.name


def folder_listing(directory: Path, mtimes: list[Folder] | None = None) -> list[Listed]:
    """The ``*.json`` files :func:`folder_entries` would read, in its order, with their stat (no file opened).

    One ``os.scandir`` per folder and one ``stat`` per file; a symlinked file is checked against the folder (and
    skipped with a warning when it leads outside), and a file reached twice (through a symlink) is listed once, as
    :func:`folder_entries` does. ``mtimes`` (when given) gets each folder's mtime (:mod:`.index_folders`), and is
    emptied when a file is a symlink or a folder cannot be read (those folders cannot vouch for their files).
    """
    confinement = _Confinement(directory)
    listed: list[Listed] = []
    reals: dict[int, str] = {}  # position -> real path, for symlinked files (their targets may be listed too)
    stack = [(os.fspath(directory), "")]
    is_regular = stat.S_ISREG
    while stack:
        folder, prefix = stack.pop()
        subfolders, files = _scanned(folder, mtimes, prefix.rstrip("/"))
        for entry in files:
            path = entry.path
            try:
                if entry.is_symlink():
                    if not confinement.inside(Path(path)):
                        logger.warning("'%s' leads outside the folder '%s': skipped.", path, confinement.root)
                        continue
                    reals[len(listed)] = os.path.realpath(path)
                    info = os.stat(path)
                else:
                    info = entry.stat(follow_symlinks=False)
            except OSError:
                listed.append(Listed(prefix + entry.name, path, None, -1))
                continue
            mtime = info.st_mtime_ns if is_regular(info.st_mode) else None
            listed.append(Listed(prefix + entry.name, path, mtime, info.st_size))
        stack += [(os.path.join(folder, name), f"{prefix}{name}/") for name in reversed(subfolders)]
    if mtimes is not None and (reals or any(m < 0 for _, m in mtimes)):
        mtimes.clear()
    return _once(listed, reals) if reals else listed


def _once(listed: list[Listed], reals: dict[int, str]) -> list[Listed]:
    """``listed`` with every file reached a second time (by its real path) left out."""
    seen: set[str] = set()
    kept = []
    for position, entry in enumerate(listed):
        real = reals.get(position) or os.path.realpath(entry.path)
        if real not in seen:
            seen.add(real)
            kept.append(entry)
    return kept


def _mode(kind: str) -> str:
    """What an index was built for: the kind of source and the JSON size cap its files were read under."""
    return f"{kind} max_bytes={max_json_bytes()}"


def _index_record(read: Callable[[], Entry]) -> Record:
    try:
        return extract(read().document)
    except ConfigurationError as exc:
        return Record(skipped=_reason(exc))


def indexed_folder_entries(directory: Path, query: Query, freshness: str = "full") -> Iterator[Entry] | None:
    """The model Items of the folder ``directory`` that may match ``query``, read through its index one at a time.

    None when the folder has no usable index and none can be written (the caller
    then reads every file). ``freshness="folders"``: see :mod:`mlm_export.stac.index_folders`.

    Raises:
        ConfigurationError: the folder holds no model Item (when the iterator is exhausted).
    """
    mode = _mode("folder")

    def reader(entry: Listed) -> Record:
        return _index_record(lambda: read_entry(Path(entry.path), copy_dict=False))

    if freshness == "folders":
        fast = select_by_folders(directory / INDEX_FILE, mode, os.fspath(directory), query, reader)
        if fast is not None:
            chosen, notes, count = fast
            root = os.fspath(directory)
            noted = [Listed(rel, os.path.join(root, rel), None, -1) for rel in notes]
            listed = sorted([*chosen, *noted], key=lambda e: walk_key(e.rel))
            return _read_chosen(directory, listed, {e.rel for e in chosen}, notes, count)
    mtimes: list[Folder] | None = [] if freshness == "folders" else None
    listed = folder_listing(directory, mtimes)
    selected = select(directory / INDEX_FILE, mode, listed, query, reader,
                      keeper(mtimes) if mtimes is not None else None)  # fmt: skip
    if selected is None:
        return None
    return _read_chosen(directory, listed, {e.rel for e in selected[0]}, selected[1], len(listed))


def _read_chosen(
    directory: Path, listed: list[Listed], chosen: set[str], notes: dict[str, str], total: int
) -> Iterator[Entry]:
    skipped: list[str] = []
    for entry in listed:
        if entry.rel in notes:
            skipped.append(f"{entry.rel} ({notes[entry.rel]})")
        elif entry.rel in chosen:
            try:
                yield read_entry(Path(entry.path), copy_dict=False)
            except ConfigurationError as exc:
                skipped.append(_skip_note(Path(entry.path), directory, exc))
    _report_skipped(directory, skipped, len(skipped) < total)


class _Links:
    """Whether relative paths below ``root`` pass through no symlink (each folder scanned once)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._folders: dict[str, dict[str, bool]] = {}

    def _real_folder(self, parent: str, name: str) -> bool:
        found = self._folders.get(parent)
        if found is None:
            try:
                with os.scandir(os.path.join(self.root, parent)) as scan:
                    found = {e.name: e.is_dir(follow_symlinks=False) for e in scan}
            except OSError:
                found = {}
            self._folders[parent] = found
        return found.get(name, False)

    def regular(self, rel: str) -> os.stat_result | None:
        """The lstat of the regular file ``rel`` when no part of its path is a symlink, ``..`` or ``.``; else None."""
        parts = rel.split("/")
        if any(part in ("", ".", "..") for part in parts):
            return None
        for depth in range(len(parts) - 1):
            if not self._real_folder("/".join(parts[:depth]), parts[depth]):
                return None
        try:
            info = os.lstat(os.path.join(self.root, rel))
        except OSError:
            return None
        return info if stat.S_ISREG(info.st_mode) else None


#: (rel, Item file, its base directory, the catalog file linking it (relative), lstat or None): strings, made paths
#: only for the files read.
_Target = tuple[str, str, str, str, os.stat_result | None]


def _from_cache(path: Path, mode: str) -> list[_Target] | None:
    """The links stored in the index when no catalog file changed and every path is still link-free, else None.

    Bases are relative to the catalog directory's real path, catalog files to the directory (joined on reading).
    """
    cached = cached_links(path.parent / INDEX_FILE, mode)
    if cached is None:
        return None
    files, links, notes = cached
    root = os.fspath(path.parent)
    checker = _Links(root)
    for rel, mtime_ns, size in files:
        info = checker.regular(rel)
        if mtime_ns is None or info is None or (info.st_mtime_ns, info.st_size) != (mtime_ns, size):
            return None
    targets: list[_Target] = []
    prefix = root + os.sep
    for rel, base, catalog in links:
        info = checker.regular(rel)
        if info is None:
            return None
        targets.append((rel, prefix + rel, base, catalog, info))
    for note in notes:
        logger.warning("%s", note)
    return targets


def _walk_and_cache(path: Path, mode: str) -> list[_Target]:
    """Walk the catalog's links (reading every catalog file) and keep them in the index for the next search."""
    root, real_root = path.parent, os.path.realpath(path.parent)
    notes: list[str] = []
    seen: set[Path] = set()
    walked = [(listing_rel(t, root), t, base, catalog) for t, base, catalog in catalog_targets(path, seen, None, notes)]
    checker, now = _Links(os.fspath(root)), time.time_ns()
    files: list[CatalogFile] = []
    for catalog in dict.fromkeys([path, *(c for *_, c in walked)]):
        rel = listing_rel(catalog, root)
        info = checker.regular(rel)
        trusted = info is not None and not racy(info.st_mtime_ns, now)
        files.append((rel, info.st_mtime_ns if trusted and info else None, info.st_size if info else -1))
    links = [(rel, listing_rel(base, real_root), listing_rel(catalog, root)) for rel, _, base, catalog in walked]
    if all(checker.regular(rel) is not None for rel, *_ in links) and not any(
        ".." in b.split("/") for _, b, _ in links
    ):
        store_links(root / INDEX_FILE, mode, files, links, notes)
    return [(rel, str(t), str(base), listing_rel(catalog, root), None) for rel, t, base, catalog in walked]


def _catalog_listing(path: Path) -> tuple[list[Listed], Callable[[Listed], Entry], Callable[[Listed], Record]]:
    """The Item files linked from the catalog file ``path`` with their stat, how to read one, how to index one.

    The links come from the index when no catalog file changed since they were stored (see :func:`_from_cache`),
    else from a walk of the catalog.
    """
    mode = _mode(f"catalog:{path.name}")
    targets = _from_cache(path, mode)
    if targets is None:
        targets = _walk_and_cache(path, mode)
    catalogs = {rel: catalog for rel, _, _, catalog, _ in targets}
    listed = [listed_of(rel, t, info, base) if info is not None else stat_listed(rel, t, base)
              for rel, t, base, _, info in targets]  # fmt: skip
    real_root = os.path.realpath(path.parent)

    def read(entry: Listed) -> Entry:
        base = Path(os.path.normpath(os.path.join(real_root, entry.base or ".")))
        return catalog_item(Path(entry.path), base, path.parent / catalogs[entry.rel])

    def index(entry: Listed) -> Record:
        try:
            return extract(read(entry).document)
        except ConfigurationError:
            return Record(item_id="", unsure=True)  # read at every search, which raises as without index

    return listed, read, index


def indexed_catalog_entries(path: Path, query: Query) -> Iterator[Entry] | None:
    """The Items linked from the catalog file ``path`` that may match ``query``, read one at a time.

    Through the index beside it; None when there is no usable index and none can
    be written.
    """
    listed, read, index = _catalog_listing(path)
    selected = select(path.parent / INDEX_FILE, _mode(f"catalog:{path.name}"), listed, query, index)
    return None if selected is None else (read(entry) for entry in selected[0])


def index_catalog(path: Path, known: Mapping[str, tuple[dict[str, Any], int, int]] | None = None) -> bool:
    """Write or bring up to date the search index beside the catalog file ``path``; whether it could be written.

    ``known``: rel -> (document, mtime_ns, size) of files just written (``build_catalog``): a file whose stat is
    still that one is indexed from its document, not read again.
    """
    listed, _, index = _catalog_listing(path)
    known = known or {}

    def indexed(entry: Listed) -> Record:
        document, mtime_ns, size = known.get(entry.rel, (None, None, None))
        if document is not None and (entry.mtime_ns, entry.size) == (mtime_ns, size):
            return extract(document)
        return index(entry)

    return refresh(path.parent / INDEX_FILE, _mode(f"catalog:{path.name}"), listed, indexed)


def _local_source(source: Any) -> Path | None:
    """The catalog file, or the folder of Items, that ``source`` names; None for lists and pystac objects.

    Raises:
        ConfigurationError: ``source`` is of no known kind, or names nothing.
    """
    if isinstance(source, (list, tuple, pystac.Catalog)):
        return None
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigurationError(
            f"source: expected a catalog directory, a pystac.Collection or a list of Items, "
            f"got {type(source).__name__}."
        )
    path = Path(source)
    if path.is_dir():
        return next((path / name for name in (COLLECTION_FILE, CATALOG_FILE) if (path / name).is_file()), path)
    if not path.exists():
        raise ConfigurationError(f"Catalog '{path}' does not exist.", hint="Pass the directory of a built catalog.")
    return path


def entries_of(directory_or_collection: Any) -> list[Entry]:
    """The model Items of a catalog directory, a folder of Items, a Collection/Catalog file or object, or a list.

    Raises:
        ConfigurationError: a folder with no model Item, a missing or non-STAC file, or an Item that is not a model
            Item.
    """
    if isinstance(directory_or_collection, (list, tuple)):
        return [read_entry(item) for item in directory_or_collection]
    if isinstance(directory_or_collection, pystac.Catalog):
        entries = []
        for item in directory_or_collection.get_items(recursive=True):
            self_href = item.get_self_href()
            document = item.to_dict(include_self_link=False, transform_hrefs=False)
            entries.append(Entry(document, f"item {item.id!r}", None, self_href))
        return entries
    path = _local_source(directory_or_collection)
    assert path is not None
    return folder_entries(path) if path.is_dir() else list(catalog_entries(path, set()))


def search_entries(source: Any, query: Query, freshness: str = "full") -> Iterable[Entry]:
    """The Items of ``source`` (as :func:`entries_of`) that may match ``query``, read one at a time.

    A folder or catalog file is read through its index (:mod:`mlm_export.stac.index`): only the Items the index
    cannot rule out are read, and matching decides; without a usable index (or with a ``filter``), every Item.
    ``freshness``: how a folder's index is checked (see :mod:`mlm_export.stac.index_folders`).

    Raises:
        ConfigurationError: as :func:`entries_of`.
    """
    path = _local_source(source)
    if path is None:
        return entries_of(source)
    if path.is_dir():
        indexed = indexed_folder_entries(path, query, freshness)
        return indexed if indexed is not None else folder_entries(path)
    indexed = indexed_catalog_entries(path, query)
    return indexed if indexed is not None else catalog_entries(path, set())
