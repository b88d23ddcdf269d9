"""The README's main job (``make demo``): export, validate, check, catalog, cards and search, with no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlm_export import validate_item
from mlm_export.demo import SENTINEL2_BANDS, main


def test_demo_exports_catalogs_and_finds_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "demo-output"
    assert main(["--output", str(output)]) == 0
    printed = capsys.readouterr().out
    item = json.loads((output / "item.json").read_text())
    assert [band["name"] for band in item["properties"]["bands"]] == list(SENTINEL2_BANDS)
    catalog_items = sorted((output / "catalog").glob("*/*.json"))
    assert [p.stem for p in catalog_items] == [item["id"]]
    assert validate_item(catalog_items[0]).valid
    # The catalog is self-contained: the weights sit beside the catalog Item, with the checksum of the export.
    model = json.loads(catalog_items[0].read_text())["assets"]["model"]
    assert (catalog_items[0].parent / model["href"]).is_file()
    assert model["file:checksum"] == item["assets"]["model"]["file:checksum"]
    assert (output / "catalog" / "index.html").is_file()
    assert f"1 hit(s) for a classifier of Sentinel-2 L1C bands over 6-7E 46-47N: ['{item['id']}']" in printed
