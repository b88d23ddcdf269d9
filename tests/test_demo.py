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
    _assert_prediction(output, printed)


def _assert_prediction(output: Path, printed: str) -> None:
    """The demo wrote a Sentinel-2-like scene, ran predict on it and printed where the COG and its Item are."""
    import numpy as np
    import rasterio

    scene, cog, result = (output / "scene" / "sentinel2.tif", output / "prediction" / "landcover.tif",
                          output / "prediction" / "landcover.json")  # fmt: skip
    assert f"prediction:  {cog.resolve()} (COG" in printed and f"result item: {result.resolve()} (valid)" in printed
    with rasterio.open(scene) as src:
        assert (src.count, src.dtypes[0], str(src.crs)) == (13, "uint16", "EPSG:32632")
        assert src.descriptions == SENTINEL2_BANDS
        grid = (src.transform, src.shape)
    with rasterio.open(cog) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert (src.transform, src.shape, str(src.crs)) == (*grid, "EPSG:32632")
        classes = src.read(1)
    assert set(np.unique(classes)) <= set(range(10))
    assert validate_item(result).valid
    document = json.loads(result.read_text())
    assert document["assets"]["data"]["file:checksum"] and document["properties"]["processing:level"] == "L4"


_NO_NETWORK = """
import socket

_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"network is off in this test (connect to {host})")
    return _connect(self, address)


socket.socket.connect = _loopback_only
socket.create_connection = lambda *a, **k: (_ for _ in ()).throw(OSError("network is off in this test"))
"""


def test_demo_validate_and_card_work_with_no_network_and_no_schema_dir(tmp_path: Path) -> None:
    """First contact (issue 23, point 11): no ../shared, no $MLM_EXPORT_SCHEMA_DIR, an empty cache, no network."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_NO_NETWORK, encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "MLM_EXPORT_SCHEMA_DIR" and "proxy" not in k.lower()}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "PYTHONPATH": f"{site}{os.pathsep}{repo}"}
    work = tmp_path / "work"  # no ../shared next to it
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)

    probe = run("-c", "import urllib.request; urllib.request.urlopen('https://schemas.stacspec.org', timeout=5)")
    assert probe.returncode != 0 and "network is off" in probe.stderr
    demo = run("-m", "mlm_export.demo", "--output", "out")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    item = work / "out" / "item.json"
    checked = run("-m", "mlm_export", "validate", str(item), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["valid"] is True
    offline = run("-m", "mlm_export", "validate", str(work / "out" / "prediction" / "landcover.json"), "--json")
    assert offline.returncode == 0, offline.stdout + offline.stderr  # the result Item validates offline too
    assert "https://stac-extensions.github.io/mlm/v1.5.2/schema.json" in report["schemas"]
    card = run("-m", "mlm_export", "card", str(item), "-o", "card.html")
    assert card.returncode == 0, card.stdout + card.stderr
    assert "not checked" not in card.stdout + card.stderr
    assert (work / "card.html").is_file()
    assert not (home / ".cache" / "mlm-export" / "schemas").exists()  # nothing was downloaded into the cache
