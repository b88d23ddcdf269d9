"""``mlm-export predict``: the CLI writes the COG and its Item, --band maps files, errors exit 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "prediction"))
from scenes import export_seg, scene  # noqa: F401 - scene is a fixture

from mlm_export.cli import main


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def test_predict_with_band_mapping_writes_cog_and_item(tmp_path: Path, scene: dict, capsys) -> None:  # noqa: F811
    item = export_seg(tmp_path / "model")
    renamed = tmp_path / "nir.tif"
    (scene["dir"] / "B08.tif").rename(renamed)
    out = tmp_path / "map.tif"
    files = [str(scene["dir"] / "B04.tif"), str(scene["dir"] / "B03.tif")]
    argv = ["predict", str(item), *files, "-o", str(out), "--band", f"B08={renamed}:1",
            "--model-class", "scenes:Seg", "--tile-size", "64", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(str(out)) and printed[1] == str(out.with_suffix(".json"))
    with rasterio.open(out) as src:
        written = src.read(1)
    assert set(np.unique(written[scene["valid"]])) <= {0, 1, 2}
    assert (written[~scene["valid"]] == 255).all()
    assert json.loads(out.with_suffix(".json").read_text())["properties"]["processing:level"] == "L4"
    assert main(argv) == 1  # the output exists now
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_predict_missing_band_exits_1_naming_it(tmp_path: Path, scene: dict, capsys) -> None:  # noqa: F811
    item = export_seg(tmp_path / "model")
    code = main(["predict", str(item), str(scene["dir"] / "B04.tif"), "-o", str(tmp_path / "m.tif"),
                 "--model-class", "scenes:Seg"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "B03, B08" in err and "available: B04" in err
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_predict_on_a_scheduler_address_gives_the_local_map(tmp_path: Path, scene: dict, capsys,  # noqa: F811
                                                             monkeypatch) -> None:  # fmt: skip
    from mlm_export.cli import predict as cli_predict

    monkeypatch.setattr(cli_predict, "SCHEDULER_TIMEOUT_S", 2)
    distributed = pytest.importorskip("distributed")
    item = export_seg(tmp_path / "model")
    common = [*map(str, scene["files"]), "--model-class", "scenes:Seg", "--tile-size", "32", "--chunks", "48",
              "--no-progress"]  # fmt: skip
    assert main(["predict", str(item), *common, "-o", str(tmp_path / "local.tif")]) == 0
    options = {"processes": False, "protocol": "tcp://", "host": "127.0.0.1", "dashboard_address": None}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, **options) as cluster:
        argv = [
            "predict",
            str(item),
            *common,
            "-o",
            str(tmp_path / "remote.tif"),
            "--scheduler",
            cluster.scheduler_address,
        ]
        assert main(argv) == 0
    with rasterio.open(tmp_path / "local.tif") as local, rasterio.open(tmp_path / "remote.tif") as remote:
        assert np.array_equal(local.read(), remote.read())
    assert main(["predict", str(item), *common, "-o", str(tmp_path / "x.tif"), "--scheduler", "tcp://127.0.0.1:9"]) == 1
    assert "no dask scheduler answered" in capsys.readouterr().err and not (tmp_path / "x.tif").exists()
