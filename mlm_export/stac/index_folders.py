"""Freshness by folder mtimes: a search of a folder of Items whose cost does not grow with the folder (opt-in).

``search(..., freshness="folders")`` (CLI ``--freshness folders``). The default, ``"full"``, stats every file of
the folder at every search (:mod:`mlm_export.stac.index`), which costs about 10 µs per file: 0.5 s at 50,000 Items.

**What "folders" checks.** A directory's ``st_mtime_ns`` changes whenever an entry is created, deleted or renamed
in it, so a file added, removed, renamed, or replaced by rename (as mlm-export's writers, ``vim``'s default on a
file with one link and most tools that save atomically do) shows in the mtime of its folder. After a full listing
whose files are all indexed and trusted, the index keeps the mtime of every folder walked, taken *before* the
folder was listed (a change during the listing then shows as a mismatch later; a folder modified within the racy
window of :func:`~mlm_export.stac.index.racy` is not kept). A search with ``freshness="folders"`` stats those
folders only; when none changed, it asks the index for the candidates and stats each candidate before reading it
(a candidate edited in place is indexed again and read, so matching decides on its current content). Any
changed, missing or new folder, a vanished candidate, or a folder with a symlinked file falls back to the full
listing (which then keeps the folders again). Cost: one stat per folder plus one per candidate. These searches
keep the index's ``-journal`` file (SQLite's ``journal_mode=PERSIST``): writing the index changes no folder's mtime.

**The blind spot**, why it is opt-in: a file *edited in place* (``open(path, "w")``, an editor that truncates and
rewrites) changes no folder's mtime; if that file was not a candidate of the query, a change that makes it match
is not seen until a ``"full"`` search (any search with the default) re-indexes it. Use ``"folders"`` on folders
written only by tools that replace files (``mlm-export export``/``build_catalog`` do), or run a default search
after editing by hand. A catalog (``collection.json``/``catalog.json``) is always checked in full.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlm_export.stac.index import (
    Listed,
    OnSync,
    Reader,
    _candidates,
    _connect,
    _delete,
    _insert,
    _plain_header,
    _safe_place,
    _stored_signature,
    _usable,
    keep_journal,
    listed_of,
    racy,
    signature,
    skipped_notes,
)

if TYPE_CHECKING:
    from mlm_export.stac.matching import Query

FRESHNESS = ("full", "folders")
#: (rel of a folder below the searched one, "" for itself; its st_mtime_ns before it was listed)
Folder = tuple[str, int]


def folder_mtime(path: str) -> int | None:
    """The mtime of the real directory ``path`` (None: gone, a symlink or not a directory)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_mtime_ns if stat.S_ISDIR(info.st_mode) else None


def keeper(folders: list[Folder] | None) -> OnSync:
    """The ``on_sync`` of :func:`~mlm_export.stac.index.select` that keeps ``folders`` (None: keep none)."""

    def keep(connection: sqlite3.Connection, listed: list[Listed]) -> None:
        trusted = folders is not None and _stored_signature(connection) == signature(listed)
        now = time.time_ns()
        rows = sorted(folders or []) if trusted and not any(racy(m, now) for _, m in folders or []) else []
        if sorted(connection.execute("SELECT rel, mtime_ns FROM folders")) == rows:
            return
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return  # read-only or busy: the next search lists in full again
        try:
            connection.execute("DELETE FROM folders")
            connection.executemany("INSERT INTO folders VALUES (?, ?)", rows)
            connection.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")

    return keep


def _unchanged(root: str, folders: list[Folder]) -> bool:
    return bool(folders) and all(
        folder_mtime(os.path.join(root, rel) if rel else root) == mtime for rel, mtime in folders
    )


def walk_key(rel: str) -> tuple[tuple[int, str], ...]:
    """The position of ``rel`` in a folder listing: a folder's files (by name) before its subfolders (by name)."""
    *folders, name = rel.split("/")
    return (*((1, f) for f in folders), (0, name))


def _reindex(connection: sqlite3.Connection, changed: list[Listed], ids: list[int], reader: Reader) -> None:
    """Index the changed candidates again (best effort: a read-only or busy index is left as it is)."""
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return
    try:
        _delete(connection, ids)
        for entry in changed:
            _insert(connection, entry, reader(entry), time.time_ns())
        connection.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _checked(
    connection: sqlite3.Connection, root: str, query: Query, reader: Reader
) -> tuple[list[Listed], dict[str, str], int] | None:
    folders = list(connection.execute("SELECT rel, mtime_ns FROM folders"))
    if _stored_signature(connection) is None or not _unchanged(root, folders):
        return None
    chosen: list[Listed] = []
    changed: list[Listed] = []
    ids: list[int] = []
    for file_id, rel, mtime, size, untrusted in _candidates(connection, query, "id, rel, mtime_ns, size, racy"):
        path = os.path.join(root, rel)
        try:
            entry = listed_of(rel, path, os.lstat(path))
        except OSError:
            return None  # removed though its folder's mtime says not: list in full
        if entry.mtime_ns is None:
            return None
        if (entry.mtime_ns, entry.size, untrusted) != (mtime, size, 0):
            changed.append(entry)
            ids.append(file_id)
        chosen.append(entry)
    if changed:
        _reindex(connection, changed, ids, reader)
    notes = skipped_notes(connection)
    some = connection.execute("SELECT 1 FROM files WHERE skipped IS NULL LIMIT 1").fetchone() is not None
    return sorted(chosen, key=lambda e: walk_key(e.rel)), notes, len(notes) + some  # "some": not all skipped


def select_by_folders(
    index_path: Path, mode: str, root: str, query: Query, reader: Reader
) -> tuple[list[Listed], dict[str, str], int] | None:
    """(candidates to read in listing order, rel -> note of the non-Items, a count of files) when no folder changed.

    The count exceeds the number of notes only when some file is an Item (what the caller's warning needs).
    None when the folders cannot vouch for the index (see the module docstring): the caller lists in full.
    """
    if not index_path.is_file() or not _safe_place(index_path) or not _plain_header(index_path):
        return None
    try:
        connection = _connect(str(index_path))
    except sqlite3.Error:
        return None
    try:
        keep_journal(connection)
        return _checked(connection, root, query, reader) if _usable(connection, mode) else None
    except sqlite3.Error:
        return None
    finally:
        connection.close()
