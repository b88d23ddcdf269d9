"""The one Sentinel-2 / Landsat 8/9 band table: common names written on export and matched both ways (issue 23,
point 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_collection import model

from mlm_export.stac.bands import COMMON_NAMES, SENSOR_BANDS, common_names, sensor_of
from mlm_export.stac.search import search
from mlm_export.stac.validate import validate_item

ALPS = (5.0, 45.0, 10.0, 48.0)
EO_V2 = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"


def _names_only(document: dict[str, Any]) -> dict[str, Any]:
    """The Item as older exports (and other tools) write it: band definitions with ``name`` only, no eo."""
    for bands in [document["properties"].get("bands"), document["assets"]["model"].get("bands")]:
        for band in bands or []:
            band.pop("eo:common_name", None)
    document["stac_extensions"] = [u for u in document["stac_extensions"] if "/eo/" not in u]
    return document


def test_the_table_matches_the_sensor_documentation() -> None:
    # Sentinel-2 MSI (ESA) and Landsat 8/9 OLI-TIRS (USGS) bands by centre wavelength, as the eo extension names them
    assert [SENSOR_BANDS["Sentinel-2 MSI"][b] for b in ("B02", "B03", "B04", "B08", "B8A", "B11", "B12")] == [
        "blue", "green", "red", "nir", "nir08", "swir16", "swir22"]  # fmt: skip
    assert [SENSOR_BANDS["Landsat 8/9 OLI-TIRS"][b] for b in ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B10")] == [
        "blue", "green", "red", "nir08", "swir16", "swir22", "pan", "lwir11"]  # fmt: skip
    assert {c for table in SENSOR_BANDS.values() for c in table.values()} <= COMMON_NAMES


def test_the_sensor_comes_from_the_whole_band_set() -> None:
    assert sensor_of(["B02", "B03", "B04", "B08"]) == "Sentinel-2 MSI"  # zero-padded: Sentinel-2 spelling
    assert sensor_of(["B2", "B3", "B4", "B8A"]) == "Sentinel-2 MSI"  # only Sentinel-2 has B8A
    assert sensor_of(["B1", "B5", "B9", "B10", "B11"]) is None  # both sensors have these (and name them apart)
    # unknown sensor: only what both agree on; B8 is nir for Sentinel-2 and pan for Landsat
    assert common_names(["B2", "B3", "B4", "B8"]) == {"B2": "blue", "B3": "green", "B4": "red"}
    assert common_names(["red", "nir", "elevation"]) == {"red": "red", "nir": "nir"}


def test_export_writes_eo_common_names_and_the_item_validates(tmp_path: Path, schema_dir: Path) -> None:
    document = model(tmp_path, "sen2", bbox=ALPS, bands=("B02", "B03", "B04", "B08", "B11"))
    expected = [("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir"), ("B11", "swir16")]
    assert [(b["name"], b["eo:common_name"]) for b in document["properties"]["bands"]] == expected
    assert document["assets"]["model"]["bands"] == document["properties"]["bands"]
    assert document["properties"]["mlm:input"][0]["bands"] == ["B02", "B03", "B04", "B08", "B11"]
    assert EO_V2 in document["stac_extensions"]
    assert validate_item(document, schema_dir).valid, validate_item(document, schema_dir).problems
    no_sensor = model(tmp_path, "terrain", bbox=ALPS, bands=("elevation", "slope"))
    assert EO_V2 not in no_sensor["stac_extensions"]
    assert "eo:common_name" not in json.dumps(no_sensor)


def test_common_names_find_models_whose_bands_carry_names_only(tmp_path: Path) -> None:
    s2 = _names_only(model(tmp_path, "s2", bbox=ALPS, bands=("B02", "B03", "B04", "B08")))
    rgb = _names_only(model(tmp_path, "rgb", bbox=ALPS, bands=("red", "green", "blue")))
    s2_red_edge = _names_only(model(tmp_path, "s2-re", bbox=ALPS, bands=("B04", "B05")))
    items = [s2, rgb, s2_red_edge]
    assert sorted(h.id for h in search(items, bands=["blue", "green", "red", "nir"])) == ["rgb", "s2"]
    assert [h.id for h in search(items, bands=["B02", "B03", "B04"])] == ["rgb"]  # the other way round
    assert [h.id for h in search(items, bands=["red", "rededge071"])] == ["s2-re"]  # B05 of Sentinel-2
    assert search(items, bands=["red", "nir08"]) == []  # B05 is Landsat's nir08, not Sentinel-2's
