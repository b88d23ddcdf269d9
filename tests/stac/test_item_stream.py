"""item_entries: folders of Items (other JSON skipped, read lazily), catalogs through their links, single Items."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_publish_stream import small_items

from mlm_export.errors import ConfigurationError
from mlm_export.stac.collection import build_catalog
from mlm_export.stac.item_stream import item_entries


def _write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_a_folder_yields_its_model_items_once_and_skips_other_json(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, hidden = small_items(3, "folder")
    _write(tmp_path / "a" / "first.json", first)
    _write(tmp_path / "b" / "second.json", second)
    _write(tmp_path / ".hidden" / "hidden.json", hidden)  # hidden folders are not entered
    _write(tmp_path / "feature.json", {"type": "Feature", "id": "f", "properties": {}, "stac_extensions": []})
    _write(tmp_path / "collection-like.json", {"type": "Collection", "id": "c"})
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / ".mlm-index.sqlite").write_bytes(b"SQLite format 3\x00")
    (tmp_path / "notes.txt").write_text("not JSON")
    (tmp_path / "c-link.json").symlink_to(tmp_path / "a" / "first.json")  # the same file: read once
    with caplog.at_level(logging.WARNING):
        entries = list(item_entries(tmp_path))
    assert [e.document["id"] for e in entries] == ["folder-00000", "folder-00001"]
    assert entries[0].base == (tmp_path / "a").resolve() and entries[0].href == str(tmp_path / "a" / "first.json")
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert "3 JSON file(s) that are not model Items skipped" in warning
    assert all(name in warning for name in ("broken.json", "collection-like.json", "feature.json"))


def test_a_folder_is_read_one_file_at_a_time(tmp_path: Path) -> None:
    items = list(small_items(3, "lazy-folder"))
    for item in items:
        _write(tmp_path / f"{item['id']}.json", item)
    stream = item_entries([tmp_path])
    assert next(stream).document["id"] == "lazy-folder-00000"
    items[1]["id"] = "changed-after-the-first-was-read"
    _write(tmp_path / "lazy-folder-00001.json", items[1])
    assert [e.document["id"] for e in stream] == ["changed-after-the-first-was-read", "lazy-folder-00002"]


def test_a_catalog_is_walked_through_its_links(tmp_path: Path) -> None:
    items = list(small_items(4, "catalog"))
    build_catalog(items, tmp_path / "cat", validate=False)
    _write(tmp_path / "cat" / "stray" / "stray.json", next(small_items(1, "stray")))  # not linked: not read
    expected = sorted(i["id"] for i in items)
    assert sorted(e.document["id"] for e in item_entries(tmp_path / "cat")) == expected
    from_file = list(item_entries(str(tmp_path / "cat" / "collection.json")))
    assert sorted(e.document["id"] for e in from_file) == expected
    assert from_file[0].base == (tmp_path / "cat" / from_file[0].document["id"]).resolve()


def test_a_folder_without_model_items_and_a_non_model_item_file_are_errors(tmp_path: Path) -> None:
    _write(tmp_path / "empty" / "feature.json", {"type": "Feature", "id": "f", "properties": {}})
    with pytest.raises(ConfigurationError, match="holds no model Item"):
        list(item_entries(tmp_path / "empty"))
    with pytest.raises(ConfigurationError, match="not a model Item|not a STAC Item"):
        list(item_entries([tmp_path / "empty" / "feature.json"]))
