"""``mlm-export predict --window-size``: the CLI resizes windows as ``predict(window_size=)`` does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "prediction"))
from scenes import Seg, export_seg, scene  # noqa: F401 - scene is a fixture

from mlm_export import predict
from mlm_export.cli import main


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def test_window_size_flag_gives_the_api_map(tmp_path: Path, scene: dict, capsys) -> None:  # noqa: F811
    item = export_seg(tmp_path / "model", resize_type="interpolation-linear")
    files = [str(f) for f in scene["files"]]
    argv = ["predict", str(item), *files, "-o", str(tmp_path / "cli.tif"), "--model-class", "scenes:Seg",
            "--tile-size", "32", "--window-size", "48", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    predict(item, files, tmp_path / "api.tif", model_class=Seg, tile_size=32, window_size=48)
    unresized = tmp_path / "plain.tif"
    predict(item, files, unresized, model_class=Seg, tile_size=32)
    with rasterio.open(tmp_path / "cli.tif") as cli, rasterio.open(tmp_path / "api.tif") as api:
        assert np.array_equal(cli.read(), api.read())
        with rasterio.open(unresized) as plain:
            assert not np.array_equal(cli.read(), plain.read())
    seg = export_seg(tmp_path / "plain-model")
    code = main(["predict", str(seg), *files, "-o", str(tmp_path / "refused.tif"), "--model-class", "scenes:Seg",
                 "--tile-size", "32", "--window-size", "48"])  # fmt: skip
    assert code == 1 and "resize_type" in capsys.readouterr().err
    assert not (tmp_path / "refused.tif").exists()
