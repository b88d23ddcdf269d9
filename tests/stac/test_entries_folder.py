"""A plain folder of Item files is a catalog: searched without collection.json, confined to the folder, with
non-Item JSON skipped and named in one warning (issue 23, point 14)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_collection import S2, SPECS, TILE, factory_items

from mlm_export.errors import ConfigurationError
from mlm_export.stac.collection import build_catalog
from mlm_export.stac.entries import entries_of
from mlm_export.stac.search import search


def _folder(root: Path) -> Path:
    """The factory Items as files (two in a subfolder), plus JSON that is not a model Item."""
    folder = root / "items"
    for index, document in enumerate(factory_items(root / "artifacts")):
        target = folder / ("sub" if index < 2 else "") / f"{document['id']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(document), encoding="utf-8")
    (folder / "settings.json").write_text('{"theme": "dark"}', encoding="utf-8")
    (folder / "broken.json").write_text("{", encoding="utf-8")
    plain = dict(factory_items(root / "plain")[0], id="plain")
    plain["stac_extensions"] = []
    (folder / "plain.json").write_text(json.dumps(plain), encoding="utf-8")
    return folder


def test_a_folder_of_items_is_searched_like_its_catalog(
    tmp_path: Path, schema_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mlm_export.stac.entries"):
        entries = entries_of(folder)
    assert sorted(e.document["id"] for e in entries) == sorted(SPECS)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "3 JSON file(s) that are not model Items skipped" in warning
    assert all(name in warning for name in ("broken.json", "settings.json", "plain.json"))
    build_catalog([e.document for e in entries], tmp_path / "cat", schema_dir=schema_dir)
    for query in [{"bbox": TILE, "bands": S2}, {"bands": ["blue", "green", "red"]}, {"tasks": ["classification"]}]:
        from_folder = [(h.id, h.score) for h in search(folder, **query)]
        assert from_folder == [(h.id, h.score) for h in search(tmp_path / "cat", **query)], query
        assert from_folder


def test_a_folder_is_read_inside_itself_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    documents = factory_items(tmp_path / "artifacts")
    folder, outside = tmp_path / "items", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "alps.json").write_text(json.dumps(documents[0]), encoding="utf-8")
    (outside / "secret.json").write_text(json.dumps(documents[1]), encoding="utf-8")
    (folder / "link.json").symlink_to(outside / "secret.json")
    (folder / "linked-dir").symlink_to(outside, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="mlm_export.stac.entries"):
        entries = entries_of(folder)
    assert [e.document["id"] for e in entries] == [documents[0]["id"]]
    assert "leads outside the folder" in caplog.text and "link.json" in caplog.text
    assert "secret" not in json.dumps([e.document for e in entries])


def test_a_folder_with_no_model_item_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"holds no model Item.*1 JSON file") as info:
        entries_of(tmp_path)
    assert "mlm-export export" in (info.value.hint or "")
