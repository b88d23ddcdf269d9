"""A searched catalog stays inside its directory: links that leave it (absolute, ``../``, symlinks) are skipped."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mlm_export.stac.entries import entries_of
from mlm_export.stac.search import search


def _item(path: Path, item_id: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None, "links": [],
                "assets": {}, "properties": {"datetime": "2020-01-01T00:00:00Z"}}  # fmt: skip
    path.write_text(json.dumps(document))
    return path


def _catalog(path: Path, links: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "Catalog", "id": path.parent.name, "stac_version": "1.0.0",
                                "description": "c", "links": links}))  # fmt: skip
    return path


def test_links_leaving_the_catalog_are_skipped_never_opened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    stolen = _item(outside / "item.json", "outside-item")
    _catalog(outside / "collection.json", [{"rel": "item", "href": "./item.json"}])
    cat = tmp_path / "cat"
    _item(cat / "items" / "a.json", "a")
    _item(cat / "items" / "d.json", "d")
    (cat / "items" / "link.json").symlink_to(stolen)
    (cat / "escape").symlink_to(outside, target_is_directory=True)
    _catalog(cat / "sub" / "catalog.json", [{"rel": "item", "href": "../items/d.json"},  # inside the top directory
                                            {"rel": "item", "href": "../../outside/item.json"}])  # fmt: skip
    leaving = [str(stolen), "/etc/passwd", "../outside/item.json", "./items/link.json", "escape/item.json",
               f"file://{stolen}"]  # fmt: skip
    links = [{"rel": "item", "href": "./items/a.json"}, {"rel": "child", "href": "./sub/catalog.json"}]
    links += [{"rel": "item", "href": href} for href in leaving]
    links += [{"rel": "child", "href": "../outside/collection.json"}, {"rel": "child", "href": "/etc"}]
    _catalog(cat / "collection.json", links)
    past = time.time_ns() - 60_000_000_000
    for catalog in (cat / "collection.json", cat / "sub" / "catalog.json"):
        os.utime(catalog, ns=(past, past))  # trusted by the search index: the second search uses its links
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mlm_export"):
            hits = search(cat, tasks=["classification"] if _ else None)
        assert sorted(hit.id for hit in hits) == ([] if _ else ["a", "d"])
        skipped = [r.getMessage() for r in caplog.records if "leads outside the catalog directory" in r.getMessage()]
        assert len(skipped) == len(leaving) + 3  # 6 items, 2 children of the top catalog, 1 item of sub/
        assert any("'/etc/passwd'" in message for message in skipped)


def test_a_catalog_inside_a_symlinked_directory_still_reads(tmp_path: Path) -> None:
    real = tmp_path / "real"
    _item(real / "items" / "a.json", "a")
    _catalog(real / "collection.json", [{"rel": "item", "href": str(real / "items" / "a.json")}])  # absolute, inside
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    assert [e.document["id"] for e in entries_of(tmp_path / "alias")] == ["a"]


def test_confinement_costs_little_per_item(tmp_path: Path) -> None:
    links = [{"rel": "item", "href": f"./items/{i}.json"} for i in range(1000)]
    for i in range(1000):
        _item(tmp_path / "items" / f"{i}.json", str(i))
    _catalog(tmp_path / "collection.json", links)
    start = time.perf_counter()
    assert len(entries_of(tmp_path)) == 1000
    assert time.perf_counter() - start < 2.0
