"""The search index of a folder or catalog (issue 25): the same answers as reading every file, kept fresh, and only
the candidate files are read."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_collection import EXAMPLES, factory_items
from test_search import QUERIES

from mlm_export.errors import ConfigurationError
from mlm_export.stac import index, io
from mlm_export.stac.collection import build_catalog
from mlm_export.stac.entries import entries_of
from mlm_export.stac.index import INDEX_FILE, SCHEMA_VERSION
from mlm_export.stac.matching import match, parse_query
from mlm_export.stac.search import rank, search

EXTRA = [{"bbox": [175.0, -5.0, 179.0, 5.0]}, {"bbox": [-179.0, -5.0, -175.0, 5.0]},
         {"bbox": [179.0, -1.0, -179.0, 1.0]}, {"bands": ["B02", "B03", "B04"], "framework": "onnx"},
         {"input_channels": 13}, {"datetime": "2030"}]  # fmt: skip


def _without_index(source: Path, query: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The hits computed from every file (the search of before the index): id, score, href, reasons."""
    arguments = {k: v for k, v in query.items() if k != "limit"}
    parsed = parse_query(**arguments)
    hits = rank([h for e in entries_of(source) if (h := match(e, parsed)) is not None], query.get("limit"))
    return [(h.id, h.score, h.href, h.reasons) for h in hits]


def _with_index(source: Path, query: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(h.id, h.score, h.href, h.reasons) for h in search(source, **query)]


def _item(folder: Path, name: str, **changes: Any) -> Path:
    """A factory Item written as ``folder/name.json`` with ``changes`` to its top level / properties."""
    document = json.loads(json.dumps(factory_items(folder)[0]))
    document["id"] = name
    for key, value in changes.items():
        if key in ("bbox", "assets", "links"):
            document[key] = value
        else:
            document["properties"][key] = value
    path = folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, schema_dir: Path) -> tuple[Path, Path]:
    """test_search's Items as a built catalog and as a plain folder."""
    root = tmp_path_factory.mktemp("index")
    folder = root / "folder"
    folder.mkdir()
    for document in factory_items(folder):
        (folder / f"{document['id']}.json").write_text(json.dumps(document))
    antimeridian = dict(factory_items(folder)[0], id="fiji", bbox=[170.0, -20.0, -175.0, -10.0])
    (folder / "fiji.json").write_text(json.dumps(antimeridian))
    for example in EXAMPLES:
        shutil.copy(example, folder / example.name)
    build_catalog(sorted(folder.glob("*.json")), root / "cat", schema_dir=schema_dir)
    return root / "cat", folder


@pytest.mark.parametrize("query", QUERIES + EXTRA, ids=[json.dumps(q)[:60] for q in QUERIES + EXTRA])
def test_the_index_gives_the_hits_of_reading_every_file(sources: tuple[Path, Path], query: dict[str, Any]) -> None:
    for source in sources:
        assert _with_index(source, query) == _without_index(source, query), source
        assert (source / INDEX_FILE).is_file()


def test_the_queries_hit_something_and_the_antimeridian_item(sources: tuple[Path, Path]) -> None:
    for source in sources:
        assert [h.id for h in search(source, bbox=[175.0, -15.0, 179.0, -12.0])] == ["fiji", "globe-rgb"]
        assert [h.id for h in search(source, bbox=[-179.0, -15.0, -176.0, -12.0])] == ["fiji", "globe-rgb"]
        assert [h.id for h in search(source, bbox=[-174.0, -15.0, -170.0, -12.0])] == ["globe-rgb"]
        assert [h.id for h in search(source, bbox=[179.0, -15.0, -179.0, -12.0])] == ["fiji", "globe-rgb"]


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every JSON file io reads (the reader itself still runs)."""
    reads: list[Path] = []
    original = io._read_capped

    def counting(path: Path, *arguments: Any) -> bytes:
        reads.append(Path(path))
        return original(path, *arguments)

    monkeypatch.setattr(io, "_read_capped", counting)
    return reads


def test_only_the_candidate_files_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "items"
    for number in range(30):
        _settled(_item(folder, f"m{number:02d}", **{"mlm:framework": "onnx" if number % 10 == 3 else "pytorch"}))
    reads = _count_reads(monkeypatch)
    assert len(search(folder, framework="onnx")) == 3
    assert len(reads) == 30 + 3  # indexed (every file once), then the 3 candidates
    reads.clear()
    assert sorted(h.id for h in search(folder, framework="ONNX")) == ["m03", "m13", "m23"]
    assert sorted(p.name for p in reads) == ["m03.json", "m13.json", "m23.json"]
    reads.clear()
    assert search(folder, framework="jax") == [] and reads == []


def test_a_catalog_reads_its_catalog_file_and_the_candidates(tmp_path: Path, schema_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    items = [_item(tmp_path / "src", f"m{i}", **{"mlm:framework": "onnx" if i == 2 else "pytorch"}) for i in range(5)]
    build_catalog(items, tmp_path / "cat", schema_dir=schema_dir)
    with sqlite3.connect(tmp_path / "cat" / INDEX_FILE) as connection:  # written too recently to trust: read again
        racy = sorted(Path(rel).name for (rel,) in connection.execute("SELECT rel FROM files WHERE racy = 1"))
    connection.close()
    time.sleep(0.1)  # past the racy window: read once more, then trusted
    reads = _count_reads(monkeypatch)
    assert [h.id for h in search(tmp_path / "cat", framework="onnx")] == ["m2"]
    assert {p.name for p in reads if p.name != "collection.json"} == {"m2.json", *racy}
    reads.clear()
    assert [h.id for h in search(tmp_path / "cat", framework="onnx")] == ["m2"]
    assert [p.name for p in reads] == ["m2.json"]


def test_edited_added_and_removed_items_are_seen_on_the_next_search(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    first = _item(folder, "a", **{"mlm:framework": "pytorch"})
    _item(folder, "b", **{"mlm:framework": "pytorch"})
    assert [h.id for h in search(folder, framework="pytorch")] == ["a", "b"]
    text = first.read_text().replace('"pytorch"', '"onnx"   ')  # same size
    first.write_text(text)
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert [h.id for h in search(folder, framework="onnx")] == ["a"]
    _item(folder / "sub", "c", **{"mlm:framework": "onnx"})
    assert [h.id for h in search(folder, framework="onnx")] == ["a", "c"]
    first.unlink()
    assert [h.id for h in search(folder, framework="onnx")] == ["c"]
    assert [h.id for h in search(folder, framework="pytorch")] == ["b"]


def test_a_file_rewritten_within_its_mtime_tick_is_read_again(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    path = _item(folder, "a", **{"mlm:framework": "pytorch"})
    future = time.time_ns() + 5_000_000_000  # an mtime the index cannot trust yet (written "now")
    os.utime(path, ns=(future, future))
    assert [h.id for h in search(folder, framework="pytorch")] == ["a"]
    path.write_text(path.read_text().replace('"pytorch"', '"onnx"   '))  # same size, same mtime
    os.utime(path, ns=(future, future))
    assert [h.id for h in search(folder, framework="onnx")] == ["a"]


@pytest.mark.parametrize("damage", ["garbage", "wal", "empty", "old-version", "other-mode"])
def test_an_unusable_index_is_rebuilt(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "items"
    _item(folder, "a", **{"mlm:framework": "onnx"})
    index = folder / INDEX_FILE
    if damage == "garbage":
        index.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    elif damage == "wal":  # a header claiming WAL mode: SQLite would make -wal/-shm files beside it
        index.write_bytes(b"SQLite format 3\x00\x10\x00\x02\x02" + bytes(4076))
    elif damage == "empty":
        index.write_bytes(b"")
    else:
        search(folder, framework="onnx")
        with sqlite3.connect(index) as connection:
            if damage == "old-version":
                connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 7}")
            else:
                connection.execute("UPDATE meta SET value = 'catalog:collection.json max_bytes=67108864'")
        connection.close()
    assert [h.id for h in search(folder, framework="onnx")] == ["a"]
    with sqlite3.connect(index) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("SELECT item_id FROM files").fetchall() == [("a",)]
    connection.close()
    assert sorted(p.name for p in folder.iterdir()) == [INDEX_FILE, "a.json", "weights.safetensors"]  # no temporary


def test_a_folder_whose_index_cannot_be_written_is_read_whole(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    _item(folder, "a", **{"mlm:framework": "onnx"})
    (folder / INDEX_FILE).mkdir()  # something in the way: never written into, never an error
    assert [h.id for h in search(folder, framework="onnx")] == ["a"]
    assert list((folder / INDEX_FILE).iterdir()) == []


@pytest.mark.parametrize("suffix", ["", "-journal", "-wal"])
def test_an_index_link_is_never_followed(tmp_path: Path, suffix: str) -> None:
    outside = tmp_path / "outside.sqlite"
    outside.write_bytes(b"mine")
    folder = tmp_path / "items"
    _item(folder, "a", **{"mlm:framework": "onnx"})
    (folder / f"{INDEX_FILE}{suffix}").symlink_to(outside)
    assert [h.id for h in search(folder, framework="onnx")] == ["a"]
    assert outside.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["items", "outside.sqlite"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_searched(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    _item(folder, "a", **{"mlm:framework": "onnx"})
    search(folder, framework="onnx")  # indexed
    _item(folder, "b", **{"mlm:framework": "onnx"})  # not in the index
    folder.chmod(0o555)
    (folder / INDEX_FILE).chmod(0o444)
    try:
        assert [h.id for h in search(folder, framework="onnx")] == ["a", "b"]
    finally:
        folder.chmod(0o755)


def test_an_index_that_cannot_be_updated_reads_the_changed_files(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    folder = tmp_path / "items"
    _item(folder, "a", **{"mlm:framework": "onnx"})
    _item(folder, "gone", **{"mlm:framework": "onnx"})
    search(folder, framework="onnx")
    _item(folder, "b", **{"mlm:framework": "onnx"})
    _item(folder, "c", **{"mlm:framework": "pytorch"})
    (folder / "gone.json").unlink()
    monkeypatch.setattr(index, "LOCK_TIMEOUT_S", 0.2)
    blocker = sqlite3.connect(folder / INDEX_FILE, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another search is writing: this one reads b and c itself
    try:
        reads = _count_reads(monkeypatch)
        assert [h.id for h in search(folder, framework="onnx")] == ["a", "b"]
        assert sorted(p.name for p in reads) == ["a.json", "b.json", "c.json"]
    finally:
        blocker.rollback()
        blocker.close()
    with sqlite3.connect(folder / INDEX_FILE) as connection:
        assert sorted(connection.execute("SELECT item_id FROM files")) == [("a",), ("gone",)]  # unchanged
    connection.close()


def test_malformed_items_give_the_errors_and_warnings_of_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "items"
    _item(folder, "good", **{"mlm:framework": "onnx"})
    _item(folder, "bad-bbox", bbox="nowhere", **{"mlm:framework": "pytorch"})
    (folder / "twice.json").write_text('{"type": "Feature", "type": "Feature"}')
    (folder / "big.json").write_text("[" + " " * 100 + "]")  # not an object (and over the cap set below)
    for _ in range(2):  # indexing, then from the index
        with caplog.at_level(logging.WARNING, logger="mlm_export"):
            caplog.clear()
            assert [h.id for h in search(folder, framework="onnx")] == ["good"]
        assert "2 JSON file(s) that are not model Items skipped" in caplog.text
        assert "big.json" in caplog.text and "twice.json (" in caplog.text and "duplicate key" in caplog.text
        with pytest.raises(ConfigurationError, match="bad-bbox.json' has a malformed bbox"):
            search(folder, bbox=[0, 0, 1, 1], framework="onnx")  # read although the framework rules it out
    for path in folder.glob("*.json"):
        if path.name != "good.json":
            path.unlink()
    (folder / "good.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="holds no model Item"):
        search(folder, framework="onnx")


def _settled(path: Path) -> None:
    """Give ``path`` an mtime well in the past, so the index trusts it (as any file not written just now)."""
    past = time.time_ns() - 60_000_000_000
    os.utime(path, ns=(past, past))


def test_a_catalog_unchanged_since_the_last_search_is_not_parsed_again(
    tmp_path: Path, schema_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    items = [_item(tmp_path / "src", f"m{i}", **{"mlm:framework": "onnx" if i == 2 else "pytorch"}) for i in range(5)]
    build_catalog(items, tmp_path / "cat", schema_dir=schema_dir)
    top = tmp_path / "cat" / "collection.json"
    document = json.loads(top.read_text())
    document["links"].append({"rel": "item", "href": "../src/m0.json"})  # leaves the catalog: a warning each time
    top.write_text(json.dumps(document))
    _settled(top)
    time.sleep(0.1)  # the Items just written are read once more by the first search, then trusted
    with caplog.at_level(logging.WARNING, logger="mlm_export"):
        assert [h.id for h in search(tmp_path / "cat", framework="onnx")] == ["m2"]  # walks, keeps the links
        reads = _count_reads(monkeypatch)
        caplog.clear()
        assert [h.id for h in search(tmp_path / "cat", framework="onnx")] == ["m2"]
    assert [p.name for p in reads] == ["m2.json"]  # collection.json not read again
    assert "'../src/m0.json', which leads outside the catalog directory" in caplog.text  # still said


def test_a_cached_catalog_link_turned_symlink_is_not_followed(
    tmp_path: Path, schema_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    items = [_item(tmp_path / "src", f"m{i}", **{"mlm:framework": "onnx"}) for i in range(3)]
    build_catalog(items, tmp_path / "cat", schema_dir=schema_dir)
    _settled(tmp_path / "cat" / "collection.json")
    assert len(search(tmp_path / "cat", framework="onnx")) == 3
    secret = _item(tmp_path / "outside", "secret", **{"mlm:framework": "onnx"})
    (tmp_path / "cat" / "m0" / "m0.json").unlink()
    (tmp_path / "cat" / "m0" / "m0.json").symlink_to(secret)
    shutil.rmtree(tmp_path / "cat" / "m1")
    (tmp_path / "cat" / "m1").symlink_to(tmp_path / "outside", target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="mlm_export"):
        assert [h.id for h in search(tmp_path / "cat", framework="onnx")] == ["m2"]
    assert caplog.text.count("leads outside the catalog directory") == 2


def test_a_catalog_file_edited_is_walked_again(tmp_path: Path, schema_dir: Path) -> None:
    items = [_item(tmp_path / "src", f"m{i}", **{"mlm:framework": "onnx"}) for i in range(3)]
    build_catalog(items, tmp_path / "cat", schema_dir=schema_dir)
    top = tmp_path / "cat" / "collection.json"
    _settled(top)
    assert len(search(tmp_path / "cat", framework="onnx")) == 3
    document = json.loads(top.read_text())
    document["links"] = [link for link in document["links"] if "m1" not in link["href"]]
    top.write_text(json.dumps(document))
    assert [h.id for h in search(tmp_path / "cat", framework="onnx")] == ["m0", "m2"]


def test_concurrent_searches_agree_and_leave_one_sound_index(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    for number in range(20):
        _item(folder, f"m{number:02d}", **{"mlm:framework": "onnx" if number % 4 == 0 else "pytorch"})
    expected = [f"m{number:02d}" for number in range(0, 20, 4)]
    results: list[list[str]] = []

    def run() -> None:
        results.append([h.id for h in search(folder, framework="onnx")])

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [expected] * 3
    with sqlite3.connect(folder / INDEX_FILE) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT count(*), count(DISTINCT rel) FROM files").fetchone() == (20, 20)
    connection.close()
    assert [h.id for h in search(folder, framework="onnx")] == expected


def test_a_new_size_cap_reads_the_files_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "items"
    path = _item(folder, "a", **{"mlm:framework": "onnx"})
    monkeypatch.setenv(io.MAX_JSON_ENV, "100")
    with pytest.raises(ConfigurationError, match="holds no model Item"):
        search(folder, framework="onnx")  # too large: skipped, and so noted in the index
    assert (folder / INDEX_FILE).is_file()
    monkeypatch.setenv(io.MAX_JSON_ENV, str(path.stat().st_size))
    assert [h.id for h in search(folder, framework="onnx")] == ["a"]


def test_a_file_reached_twice_through_a_symlink_is_listed_once(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    _item(folder / "real", "b", **{"mlm:framework": "onnx"})
    (folder / "a-link.json").symlink_to(folder / "real" / "b.json")  # listed first: it is the one kept
    query = {"framework": "onnx"}
    assert _with_index(folder, query) == _without_index(folder, query)
    assert [h.href for h in search(folder, **query)] == [str(folder / "a-link.json")]


def test_build_catalog_indexes_what_reading_its_files_would(sources: tuple[Path, Path], tmp_path: Path) -> None:
    """build_catalog indexes the documents it has just written without reading them again: the same rows."""
    catalog = tmp_path / "cat"
    shutil.copytree(sources[0], catalog)
    (catalog / INDEX_FILE).unlink()
    search(catalog, framework="none")  # indexed by reading every file

    def rows(path: Path) -> list[list[tuple[Any, ...]]]:
        with sqlite3.connect(path) as connection:
            columns = "rel, item_id, skipped, unsure, start_us, end_us, nbands"
            tables = [f"SELECT {columns} FROM files ORDER BY rel", "SELECT * FROM boxes ORDER BY id",
                      "SELECT * FROM tasks ORDER BY 1, 2", "SELECT * FROM frameworks ORDER BY 1, 2",
                      "SELECT * FROM bands ORDER BY 1, 2, 3", "SELECT * FROM channels ORDER BY 1, 2"]  # fmt: skip
            found = [connection.execute(sql).fetchall() for sql in tables]
        connection.close()
        return found

    assert rows(sources[0] / INDEX_FILE) == rows(catalog / INDEX_FILE)
    assert len(rows(catalog / INDEX_FILE)[0]) == len(list(sources[1].glob("*.json")))
