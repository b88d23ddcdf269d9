"""check_item's report names what the Item calls the model (asset key, file name), also for a remote artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch_models as tm
from loopback import LoopbackServer

from mlm_export import check_item, export_item, save_item
from mlm_export.cli import main

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])


@pytest.fixture
def pt2_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    torch.manual_seed(0)
    model = tm.TinyMLP(in_features=6, num_classes=3).eval()
    item = export_item(model, input_shape=[-1, 6], artifact_dir=site, artifact_format="torch.export",
                       bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z", item_id="remote-pt2")  # fmt: skip
    save_item(item, site / "item.json")
    return site


def test_remote_pt2_check_names_the_asset_and_file_quietly(
    pt2_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLM_EXPORT_CACHE_DIR", str(cache))
    capfd.readouterr()
    with LoopbackServer(pt2_site) as server:
        url = f"{server.url}/item.json"
        assert main(["check", url]) == 0
        out, err = capfd.readouterr()
        report = check_item(url)
    assert "Unable to load package" not in err and ".pt2" not in err  # torch's noise about the suffix-less entry
    assert err.strip() == ""
    assert out.splitlines()[0] == "check_item ok: TinyMLP.pt2 (asset 'model', torch.export.save)"
    assert report.artifact.parent == cache and report.artifact.name not in out  # the cache entry stays a Path
    assert (report.asset_key, report.file_name) == ("model", "TinyMLP.pt2")


def test_local_check_names_the_file_too(pt2_site: Path) -> None:
    report = check_item(pt2_site / "item.json")
    assert str(report).splitlines()[0] == "check_item ok: TinyMLP.pt2 (asset 'model', torch.export.save)"
    assert report.artifact == pt2_site / "TinyMLP.pt2"


@pytest.mark.parametrize(
    ("href", "name"),
    [("https://h/v1/model%20a.pt2?sig=1#x", "model a.pt2"), ("./weights.safetensors", "weights.safetensors"),
     ("s3://bucket/dir/", "dir"), ("", "")],
)  # fmt: skip
def test_href_file_name(href: str, name: str) -> None:
    from mlm_export.loading import href_file_name

    assert href_file_name(href) == name
