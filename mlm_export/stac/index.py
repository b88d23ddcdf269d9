"""The search index of a folder of Items or a built catalog: one SQLite file beside them, so a query reads its hits.

**Why SQLite.** It is in Python's standard library (no new dependency), its R*Tree module answers bbox queries
from an index, the whole index is one file (:data:`INDEX_FILE`, ``.mlm-index.sqlite``, in the searched folder or
beside ``catalog.json``/``collection.json``), and its transactions keep concurrent searches from corrupting it.

**What it holds**, per Item file: the path (relative), ``mtime_ns`` and size, the Item id, its bbox in an R*Tree
(a bbox crossing the antimeridian as two boxes), its time range, its tasks, its framework keys (as
:mod:`mlm_export.stac.matching` normalises them), the bands it reads (each with every key that answers to it, as
matching computes them), the sizes of its inputs' channel dimensions and its top-level properties' values (for
CQL2 filters, :mod:`mlm_export.stac.index_filter`).

**How a query uses it.** :func:`candidate_rows` turns a :class:`~mlm_export.stac.matching.Query` into SQL that
returns a *superset* of the matching files; only those are read (with every check of :mod:`mlm_export.stac.io`:
size cap, duplicate keys...) and :func:`~mlm_export.stac.matching.match` decides, so the answers are those of a
search without index. A file whose fields could not be extracted is always a candidate. A CQL2 ``filter`` is
narrowed by :func:`~mlm_export.stac.index_filter.filter_condition` as far as it is translated (comparisons of
properties with literals, ``and``/``or``); what it cannot translate narrows nothing. A query with no criterion reads
every Item.

**Freshness.** Every search lists the folder (``os.scandir`` and one ``stat`` per file; for a catalog, the links
kept from its last walk while no catalog file changed) and compares: a digest of the whole listing equal to the
stored one means nothing changed; else a file whose ``mtime_ns`` or size differs, or that was written too close
to its indexing to trust its mtime ("racy", as git calls it), is indexed again and removed files are dropped, in
one transaction. Another schema version, another JSON size cap, a corrupt file or a header in another journal
mode rebuilds the index from scratch in a temporary file renamed over it. When the index cannot be written (a
read-only folder, or another search holds it longer than :data:`LOCK_TIMEOUT_S`), changed files are simply read
at that search, and without any usable index the search reads every file, as before; neither is an error. The
index and SQLite's files beside it (``-journal``, ``-wal``, ``-shm``) are never used through a symlink. Paths from
the index are never opened: only the paths of the current listing, confined to the folder by
:mod:`mlm_export.stac.entries`, are.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import sqlite3
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mlm_export.stac.bands import band_key, definition_aliases, required_bands
from mlm_export.stac.index_filter import PropertyRow, filter_condition, property_rows
from mlm_export.stac.spacetime import EARLIEST, LATEST, item_bbox, item_interval

if TYPE_CHECKING:
    from mlm_export.stac.matching import Query

logger = logging.getLogger(__name__)

INDEX_FILE = ".mlm-index.sqlite"
#: Bumped whenever the tables or what is extracted into them change: an index of another version is rebuilt.
SCHEMA_VERSION = 5
#: A file modified less than this before it was indexed may change again within the same mtime tick ("racy").
_RACY_NS = 50_000_000
#: The same for filesystems with whole-second mtimes (FAT: 2 s).
_RACY_COARSE_NS = 2_100_000_000
#: Seconds a search waits for another one that is updating the index before reading the changed files itself.
LOCK_TIMEOUT_S = 30.0
_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE files(id INTEGER PRIMARY KEY, rel TEXT NOT NULL UNIQUE, mtime_ns INTEGER, size INTEGER,
                   racy INTEGER NOT NULL, item_id TEXT, skipped TEXT, unsure INTEGER NOT NULL,
                   start_us INTEGER, end_us INTEGER, nbands INTEGER NOT NULL);
CREATE INDEX files_unsure ON files(unsure) WHERE unsure = 1;
CREATE INDEX files_skipped ON files(skipped) WHERE skipped IS NOT NULL;
CREATE VIRTUAL TABLE boxes USING rtree(id, west, east, south, north);
CREATE TABLE tasks(file INTEGER NOT NULL, task TEXT NOT NULL, PRIMARY KEY(file, task)) WITHOUT ROWID;
CREATE INDEX tasks_by_task ON tasks(task, file);
CREATE TABLE frameworks(file INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY(file, key)) WITHOUT ROWID;
CREATE INDEX frameworks_by_key ON frameworks(key, file);
CREATE TABLE bands(file INTEGER NOT NULL, band INTEGER NOT NULL, key TEXT NOT NULL,
                   PRIMARY KEY(file, band, key)) WITHOUT ROWID;
CREATE INDEX bands_by_key ON bands(key, file, band);
CREATE TABLE channels(file INTEGER NOT NULL, size NUMERIC NOT NULL, PRIMARY KEY(file, size)) WITHOUT ROWID;
CREATE INDEX channels_by_size ON channels(size, file);
CREATE TABLE props(file INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, value,
                   PRIMARY KEY(file, name)) WITHOUT ROWID;
CREATE INDEX props_by_value ON props(name, kind, value, file);
CREATE TABLE catalog_files(rel TEXT PRIMARY KEY, mtime_ns INTEGER, size INTEGER) WITHOUT ROWID;
CREATE TABLE links(pos INTEGER PRIMARY KEY, rel TEXT NOT NULL, base TEXT NOT NULL, catalog TEXT NOT NULL);
CREATE TABLE notes(pos INTEGER PRIMARY KEY, message TEXT NOT NULL);
CREATE TABLE folders(rel TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL) WITHOUT ROWID;
"""
_SIDE_TABLES = ("tasks", "frameworks", "bands", "channels", "props")
_SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


class Listed(NamedTuple):
    """One file of the current listing: its key in the index, where to open it, and its stat."""

    rel: str
    path: str
    mtime_ns: int | None  # None: not a regular file, never indexed (always read, so its error shows)
    size: int
    base: str | None = None  # a catalog Item's directory (as catalog_entries computes it; may be relative)


@dataclass
class Record:
    """What the index keeps of one Item file (see the module docstring)."""

    item_id: str | None = None
    skipped: str | None = None
    unsure: bool = False
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # west, east, south, north
    start_us: int = 0
    end_us: int = 0
    tasks: set[str] = field(default_factory=set)
    frameworks: set[str] = field(default_factory=set)
    bands: list[set[str]] = field(default_factory=list)
    channels: set[float] = field(default_factory=set)
    props: list[PropertyRow] = field(default_factory=list)


def _micros(value: dt.datetime) -> int:
    return (value - EARLIEST) // dt.timedelta(microseconds=1)


def _framework_keys(document: Mapping[str, Any]) -> set[str]:
    from mlm_export.stac.matching import _frameworks, framework_key

    return {framework_key(name) for name in _frameworks(document)}


def _channel_sizes(document: Mapping[str, Any]) -> set[float]:
    """Sizes of the channel dimensions of every input, walked as ``matching._match_channels`` walks them."""
    from mlm_export.stac.matching import channel_dims

    return {size for _, _, size in channel_dims(document) if isinstance(size, (int, float))}


def _fill(record: Record, document: Mapping[str, Any]) -> None:
    bbox, _ = item_bbox(document, "item")
    if bbox is not None:
        west, south, east, north = bbox
        record.boxes = [(west, east, south, north)] if west <= east else [(west, 180.0, south, north),
                                                                          (-180.0, east, south, north)]  # fmt: skip
    start, end = item_interval(document, "item")
    record.start_us, record.end_us = _micros(start or EARLIEST), _micros(end or LATEST)
    record.tasks = {t for t in (document.get("properties") or {}).get("mlm:tasks") or [] if isinstance(t, str)}
    record.frameworks = _framework_keys(document)
    aliases = definition_aliases(document)
    required = required_bands(document, aliases)
    record.bands = [aliases.get(band_key(name), set()) | {band_key(name)} for name in required]
    record.channels = _channel_sizes(document)
    record.props = property_rows(document)


def extract(document: Mapping[str, Any]) -> Record:
    """The index record of the Item JSON ``document``; ``unsure`` (always a candidate) when a field is malformed."""
    record = Record(item_id=str(document.get("id")))
    try:
        _fill(record, document)
    except Exception:  # noqa: BLE001 - whatever fails here fails (or not) in matching, which then decides
        return Record(item_id=record.item_id, unsure=True)
    return record


# --- the database -------------------------------------------------------------------------------------------------


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def keep_journal(connection: sqlite3.Connection) -> None:
    """Keep the ``-journal`` file between transactions, so that a write changes no folder's mtime (index_folders)."""
    with contextlib.suppress(sqlite3.Error):
        connection.execute("PRAGMA journal_mode=PERSIST")


def _create(path: str, mode: str) -> sqlite3.Connection:
    connection = _connect(path)
    connection.executescript(_SCHEMA)
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    connection.execute("INSERT INTO meta VALUES ('mode', ?)", (mode,))
    return connection


def _usable(connection: sqlite3.Connection, mode: str) -> bool:
    """Whether the opened file is an index of this version for this kind of source (raises when corrupt)."""
    if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        return False
    row = connection.execute("SELECT value FROM meta WHERE key = 'mode'").fetchone()
    return row is not None and row[0] == mode


def _rebuilt(index_path: Path, mode: str) -> sqlite3.Connection | None:
    """A new, empty index renamed over ``index_path``; None when the folder cannot be written."""
    try:
        handle, temporary = tempfile.mkstemp(prefix=f"{INDEX_FILE}.", suffix=".tmp", dir=index_path.parent)
        os.close(handle)
    except OSError:
        return None
    try:
        _create(temporary, mode).close()
        with contextlib.suppress(OSError):
            os.unlink(f"{temporary}-journal")  # kept by journal_mode=PERSIST
        os.replace(temporary, index_path)
        for suffix in ("-wal", "-shm"):  # left by a file that claimed WAL mode (never this index's)
            with contextlib.suppress(OSError):
                os.unlink(f"{index_path}{suffix}")
        return _connect(str(index_path))
    except (OSError, sqlite3.Error):
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return None


def _busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds the index (not that the file is damaged)."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _safe_place(index_path: Path) -> bool:
    """Whether the index and SQLite's files beside it are absent or regular files (never written through a link)."""
    for suffix in ("", *_SQLITE_SIDE_FILES):
        path = Path(f"{index_path}{suffix}")
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return False
    return True


def _plain_header(index_path: Path) -> bool:
    """Whether the file starts as a SQLite database in rollback-journal mode (the only mode this index uses)."""
    try:
        with open(index_path, "rb") as stream:
            head = stream.read(100)
    except OSError:
        return False
    return len(head) == 100 and head.startswith(b"SQLite format 3\x00") and head[18] == 1 and head[19] == 1


def open_index(index_path: Path, mode: str) -> sqlite3.Connection | None:
    """The index at ``index_path`` (created, or rebuilt when unusable); None when there is none and none can be made.

    A read-only existing index is returned as is (its changes then cannot be saved, see :func:`sync`).
    """
    if not _safe_place(index_path):
        return None  # never write through a link or into something else
    if index_path.is_file() and _plain_header(index_path):
        try:
            connection = _connect(str(index_path))
            if _usable(connection, mode):
                return connection
            connection.close()
        except sqlite3.Error as exc:
            if _busy(exc):
                return None  # held by another search for longer than LOCK_TIMEOUT_S: read every file this time
            # else corrupt: rebuilt below
        logger.info("'%s' is not a usable search index: rebuilt.", index_path)
    return _rebuilt(index_path, mode)


# --- freshness --------------------------------------------------------------------------------------------------


def _stored(connection: sqlite3.Connection) -> dict[str, tuple[int, int | None, int | None, int]]:
    rows = connection.execute("SELECT rel, id, mtime_ns, size, racy FROM files")
    return {rel: (file_id, mtime, size, racy) for rel, file_id, mtime, size, racy in rows}


def _diff(
    stored: Mapping[str, tuple[int, int | None, int | None, int]], listed: list[Listed]
) -> tuple[dict[str, int], list[Listed], list[int]]:
    """(rel -> id of the fresh files, files to index, ids of rows to drop)."""
    fresh: dict[str, int] = {}
    dirty: list[Listed] = []
    current: set[str] = set()
    for entry in listed:
        if entry.rel in current:
            continue  # a catalog may link one file twice
        current.add(entry.rel)
        row = stored.get(entry.rel)
        if row is not None and entry.mtime_ns is not None and row[1:] == (entry.mtime_ns, entry.size, 0):
            fresh[entry.rel] = row[0]
        else:
            dirty.append(entry)
    drop = [row[0] for rel, row in stored.items() if rel not in current or rel not in fresh]
    return fresh, dirty, drop


def _delete(connection: sqlite3.Connection, ids: list[int]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        boxes = [2 * i for i in chunk] + [2 * i + 1 for i in chunk]
        connection.execute(f"DELETE FROM boxes WHERE id IN ({','.join('?' * len(boxes))})", boxes)
        for table in (*_SIDE_TABLES, "files"):
            column = "id" if table == "files" else "file"
            connection.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)


def racy(mtime_ns: int, read_ns: int) -> bool:
    """Whether a file of ``mtime_ns`` read at ``read_ns`` may change again without its mtime changing."""
    return mtime_ns >= read_ns - (_RACY_COARSE_NS if mtime_ns % 1_000_000_000 == 0 else _RACY_NS)


def _insert(connection: sqlite3.Connection, entry: Listed, record: Record, read_ns: int) -> int:
    untrusted = int(entry.mtime_ns is None or racy(entry.mtime_ns, read_ns))
    cursor = connection.execute(
        "INSERT INTO files(rel, mtime_ns, size, racy, item_id, skipped, unsure, start_us, end_us, nbands) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.rel, entry.mtime_ns, entry.size, untrusted, record.item_id, record.skipped, int(record.unsure),
         record.start_us, record.end_us, len(record.bands)),
    )  # fmt: skip
    file_id = int(cursor.lastrowid or 0)
    connection.executemany(
        "INSERT INTO boxes VALUES (?, ?, ?, ?, ?)", [(2 * file_id + i, *box) for i, box in enumerate(record.boxes)]
    )
    connection.executemany("INSERT INTO tasks VALUES (?, ?)", [(file_id, t) for t in record.tasks])
    connection.executemany("INSERT INTO frameworks VALUES (?, ?)", [(file_id, k) for k in record.frameworks])
    rows = [(file_id, band, key) for band, keys in enumerate(record.bands) for key in keys]
    connection.executemany("INSERT INTO bands VALUES (?, ?, ?)", rows)
    connection.executemany("INSERT INTO channels VALUES (?, ?)", [(file_id, s) for s in record.channels])
    connection.executemany("INSERT OR IGNORE INTO props VALUES (?, ?, ?, ?)", [(file_id, *r) for r in record.props])
    return file_id


Reader = Callable[[Listed], Record]


def signature(listed: list[Listed]) -> str:
    """A digest of the listing (paths, mtimes, sizes): equal to the stored one, the index is known to be fresh."""
    text = "\n".join(f"{e.rel}\0{e.mtime_ns}\0{e.size}" for e in listed)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _stored_signature(connection: sqlite3.Connection) -> str | None:
    row = connection.execute("SELECT value FROM meta WHERE key = 'signature'").fetchone()
    return None if row is None else row[0]


def _seal(connection: sqlite3.Connection, listed: list[Listed], digest: str) -> None:
    """Inside the transaction: keep the listing's digest when every file is indexed and trusted, else none."""
    trusted = (
        all(e.mtime_ns is not None for e in listed)
        and connection.execute("SELECT 1 FROM files WHERE racy = 1 LIMIT 1").fetchone() is None
    )
    connection.execute("DELETE FROM meta WHERE key = 'signature'")
    if trusted:
        connection.execute("INSERT INTO meta VALUES ('signature', ?)", (digest,))


def sync(connection: sqlite3.Connection, listed: list[Listed], reader: Reader) -> list[Listed]:
    """Bring the index up to date with ``listed``; the files left unindexed (to be read by the caller).

    When the listing's :func:`signature` is the one stored, nothing is compared. Else changed and new files are
    read with ``reader`` and indexed, rows of removed files dropped, in one transaction (another search waits for
    it). Files are left unindexed when the index cannot be written (read-only) or are not regular files.
    """
    digest = signature(listed)
    if _stored_signature(connection) == digest:
        return []
    _, dirty, drop = _diff(_stored(connection), listed)
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return dirty  # read-only (or locked too long): the changed files are read at every search
    try:
        fresh, dirty, drop = _diff(_stored(connection), listed)  # another search may have done part of it
        _delete(connection, drop)
        for entry in dirty:
            if entry.mtime_ns is not None:
                _insert(connection, entry, reader(entry), time.time_ns())
        _seal(connection, listed, digest)
        connection.execute("COMMIT")
        return [entry for entry in dirty if entry.mtime_ns is None]
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        return _diff(_stored(connection), listed)[1]


# --- queries ----------------------------------------------------------------------------------------------------


def _marks(values: Iterable[Any]) -> tuple[str, list[Any]]:
    listed = list(values)
    return ",".join("?" * len(listed)), listed


def _bbox_condition(query: Query) -> tuple[str, list[Any]]:
    assert query.bbox is not None
    parts = getattr(query.bbox, "geoms", None) or [query.bbox]
    clauses, parameters = [], []
    for part in parts:
        west, south, east, north = part.bounds
        clauses.append("(west <= ? AND east >= ? AND south <= ? AND north >= ?)")
        parameters += [east, west, north, south]
    return f"id IN (SELECT id >> 1 FROM boxes WHERE {' OR '.join(clauses)})", parameters


def _conditions(query: Query) -> tuple[list[str], list[Any]]:
    """SQL conditions on ``files`` that every Item matching ``query`` meets (a superset; matching decides)."""
    from mlm_export.stac.matching import TASK_FAMILIES, framework_key

    conditions: list[str] = []
    parameters: list[Any] = []
    if query.bbox is not None:
        clause, values = _bbox_condition(query)
        conditions.append(clause)
        parameters += values
    if query.interval is not None:
        start, end = query.interval
        conditions.append("start_us <= ? AND end_us >= ?")
        parameters += [_micros(end or LATEST), _micros(start or EARLIEST)]
    for task in query.tasks or ():
        marks, values = _marks((task, *TASK_FAMILIES.get(task, ())))
        conditions.append(f"id IN (SELECT file FROM tasks WHERE task IN ({marks}))")
        parameters += values
    if query.bands is not None:
        marks, values = _marks(query.bands)
        conditions.append(
            f"id IN (SELECT file FROM bands WHERE key IN ({marks}) GROUP BY file "
            "HAVING count(DISTINCT band) = (SELECT nbands FROM files AS f WHERE f.id = bands.file))"
        )
        parameters += values
    if query.framework is not None:
        conditions.append("id IN (SELECT file FROM frameworks WHERE key = ?)")
        parameters.append(framework_key(query.framework))
    if query.input_channels is not None:
        conditions.append("id IN (SELECT file FROM channels WHERE size IN (?, -1))")
        parameters.append(query.input_channels)
    translated = filter_condition(query.filter.to_json()) if query.filter is not None else None
    if translated is not None:
        conditions.append(translated[0])
        parameters += translated[1]
    return conditions, parameters


def _candidates(connection: sqlite3.Connection, query: Query, columns: str) -> sqlite3.Cursor:
    """The rows of the candidates: ``unsure`` rows, then those meeting the conditions (no scan of every row).

    The ``unsure`` rows come from their partial index, the others from one ``id IN (...)`` of the conditions.
    """
    conditions, parameters = _conditions(query)
    where = " AND ".join(conditions) or "1"
    sql = (f"SELECT {columns} FROM files WHERE unsure = 1 AND item_id IS NOT NULL UNION ALL "
           f"SELECT {columns} FROM files WHERE {where} AND unsure = 0 AND item_id IS NOT NULL")  # fmt: skip
    return connection.execute(sql, parameters)


def candidate_rows(connection: sqlite3.Connection, query: Query) -> set[str]:
    """Paths of the indexed model Items that may match ``query`` (``unsure`` rows always)."""
    return {row[0] for row in _candidates(connection, query, "rel")}


def skipped_notes(connection: sqlite3.Connection) -> dict[str, str]:
    """Path -> why the file is no model Item, for every indexed file that is not."""
    return dict(connection.execute("SELECT rel, skipped FROM files WHERE skipped IS NOT NULL"))


_Answer = tuple[list[Listed], set[str], dict[str, str]]


OnSync = Callable[[sqlite3.Connection, list[Listed]], None]


def _answer(
    connection: sqlite3.Connection | None, listed: list[Listed], query: Query, reader: Reader, on_sync: OnSync | None
) -> _Answer | sqlite3.DatabaseError | None:
    """Sync the index and query it (closing it): files left unindexed, candidate paths, notes."""
    if connection is None:
        return None
    try:
        if on_sync is not None:
            keep_journal(connection)
        unindexed = sync(connection, listed, reader)
        if on_sync is not None:
            on_sync(connection, listed)
        return unindexed, candidate_rows(connection, query), skipped_notes(connection)
    except sqlite3.DatabaseError as exc:
        return exc
    finally:
        connection.close()


def select(
    index_path: Path, mode: str, listed: list[Listed], query: Query, reader: Reader, on_sync: OnSync | None = None
) -> tuple[list[Listed], dict[str, str]] | None:
    """The files of ``listed`` to read for ``query`` and (rel -> note) of those known not to be model Items.

    None when there is no usable index: the caller reads every file. Rows of
    files no longer listed are never chosen; files left unindexed are always read, and their old notes dropped.
    ``on_sync`` is called with the index once it is up to date with ``listed`` (to keep what the listing saw).
    """
    answer = _answer(open_index(index_path, mode), listed, query, reader, on_sync)
    if isinstance(answer, sqlite3.DatabaseError):  # damaged while in use (a busy index is not): rebuilt, once
        answer = None if _busy(answer) else _answer(_rebuilt(index_path, mode), listed, query, reader, on_sync)
    if answer is None or isinstance(answer, sqlite3.DatabaseError):
        return None
    unindexed, wanted, notes = answer
    left = {entry.rel for entry in unindexed}
    chosen = [entry for entry in listed if entry.rel in wanted or entry.rel in left]
    return chosen, {rel: note for rel, note in notes.items() if rel not in left}


def refresh(index_path: Path, mode: str, listed: list[Listed], reader: Reader) -> bool:
    """Bring the index up to date without a query (as ``build_catalog`` does); whether it could be written."""
    connection = open_index(index_path, mode)
    if connection is None:
        return False
    try:
        unindexed = sync(connection, listed, reader)
    except sqlite3.DatabaseError:
        return False
    finally:
        connection.close()
    return not unindexed


def listing_rel(path: Path, root: Path) -> str:
    """The key of ``path`` in the index of ``root`` (a relative POSIX path)."""
    return Path(os.path.relpath(path, root)).as_posix()


def listed_of(rel: str, path: str, info: os.stat_result | None, base: str | None = None) -> Listed:
    """The :class:`Listed` of ``path`` from its stat (None: gone; not a regular file: never indexed)."""
    if info is None:
        return Listed(rel, path, None, -1, base)
    return Listed(rel, path, info.st_mtime_ns if stat.S_ISREG(info.st_mode) else None, info.st_size, base)


def stat_listed(rel: str, path: str, base: str | None = None) -> Listed:
    """The :class:`Listed` of ``path``, its stat following a symlink."""
    try:
        info = os.stat(path)
    except OSError:
        info = None
    return listed_of(rel, path, info, base)


# --- the links of a catalog -------------------------------------------------------------------------------------

CatalogFile = tuple[str, int | None, int]  # rel, mtime_ns (None: not to be trusted), size
Link = tuple[str, str, str]  # rel of the Item file, rel of its base (to the real root), rel of the linking catalog


def cached_links(index_path: Path, mode: str) -> tuple[list[CatalogFile], list[Link], list[str]] | None:
    """The catalog files, links and warnings stored by :func:`store_links`; None when none are stored."""
    if not index_path.is_file() or not _safe_place(index_path) or not _plain_header(index_path):
        return None
    try:
        connection = _connect(str(index_path))
        try:
            if not _usable(connection, mode):
                return None
            files = [tuple(row) for row in connection.execute("SELECT rel, mtime_ns, size FROM catalog_files")]
            links = [tuple(row) for row in connection.execute("SELECT rel, base, catalog FROM links ORDER BY pos")]
            notes = [row[0] for row in connection.execute("SELECT message FROM notes ORDER BY pos")]
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    return (files, links, notes) if files else None  # type: ignore[return-value]


def store_links(index_path: Path, mode: str, files: list[CatalogFile], links: list[Link], notes: list[str]) -> None:
    """Keep what a walk of the catalog found, so that the next search need not parse the catalog files."""
    connection = open_index(index_path, mode)
    if connection is None:
        return
    try:
        connection.execute("BEGIN IMMEDIATE")
        for table in ("catalog_files", "links", "notes"):
            connection.execute(f"DELETE FROM {table}")
        connection.executemany("INSERT INTO catalog_files VALUES (?, ?, ?)", files)
        connection.executemany("INSERT INTO links(rel, base, catalog) VALUES (?, ?, ?)", links)
        connection.executemany("INSERT INTO notes(message) VALUES (?)", [(note,) for note in notes])
        connection.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
    finally:
        connection.close()
