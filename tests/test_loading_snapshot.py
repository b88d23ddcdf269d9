"""An Item is fetched once per load_model/check_item call and checked before any artifact is requested; a remote
Item (an Item URL, or a dict/pystac Item whose ``self`` link is a URL) may not name local files."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pystac
import pytest
import torch
import torch_models as tm
from loopback import LoopbackServer

from mlm_export import check_item, export_item, load_model, save_item
from mlm_export.errors import ItemValidationError

# Loopback servers only; an empty artifact cache per test (conftest.cache_dir): every remote case downloads.
pytestmark = [pytest.mark.allow_hosts(["127.0.0.1"]), pytest.mark.usefixtures("cache_dir")]


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Items of two different random models, ``a/item.json`` and ``b/item.json`` (torch.export, relative)."""
    root = tmp_path_factory.mktemp("snapshot")
    for seed, name in ((1, "a"), (2, "b")):
        torch.manual_seed(seed)
        directory = root / name
        directory.mkdir()
        item = export_item(tm.TinyMLP(in_features=6, num_classes=3).eval(), input_shape=[-1, 6], item_id=name,
                           artifact_dir=directory, artifact_format="torch.export")  # fmt: skip
        save_item(item, directory / "item.json")
    return root


@pytest.fixture
def site(exported: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "site"))


@pytest.fixture
def server(site: Path) -> Iterator[LoopbackServer]:
    with LoopbackServer(site) as running:
        yield running


def model_asset(item: Path) -> dict:
    return next(a for a in json.loads(item.read_text())["assets"].values() if "mlm:model" in a["roles"])


def test_check_item_fetches_the_item_once(site: Path, server: LoopbackServer) -> None:
    artifact = "/a/" + model_asset(site / "a" / "item.json")["href"].removeprefix("./")
    assert check_item(f"{server.url}/a/item.json").ok
    assert server.hits["/a/item.json"] == 1 and server.hits[artifact] == 1
    load_model(f"{server.url}/a/item.json")
    assert server.hits["/a/item.json"] == 2 and server.hits[artifact] == 1  # the artifact came from the cache


def test_a_non_mlm_item_is_refused_before_any_artifact_is_requested(site: Path, server: LoopbackServer) -> None:
    item = site / "a" / "item.json"
    document = json.loads(item.read_text())
    document["stac_extensions"] = [e for e in document["stac_extensions"] if "/mlm/" not in e]
    item.write_text(json.dumps(document))
    artifact = site / "a" / model_asset(item)["href"]
    for call in (check_item, load_model):
        with pytest.raises(ItemValidationError, match="is not an MLM Item") as caught:
            call(f"{server.url}/a/item.json")
        assert sha256_hex(artifact) not in str(caught.value)
    assert server.hits["/a/item.json"] == 2
    assert [path for path in server.hits if path != "/a/item.json"] == []  # no asset href was requested


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["assets"]["model"].pop("mlm:artifact_type"), "no 'mlm:artifact_type'"),
        (lambda d: d["assets"]["model"].pop("file:checksum"), "has no file:checksum"),
        (lambda d: d["properties"].pop("mlm:output"), "declares no mlm:output"),
    ],
)
def test_an_item_that_cannot_be_checked_is_refused_before_downloading(
    site: Path, server: LoopbackServer, change: object, words: str
) -> None:
    item = site / "a" / "item.json"
    document = json.loads(item.read_text())
    change(document)  # type: ignore[operator]
    item.write_text(json.dumps(document))
    with pytest.raises(ItemValidationError, match=words):
        check_item(f"{server.url}/a/item.json")
    assert [path for path in server.hits if path != "/a/item.json"] == []


def test_report_and_run_are_about_one_snapshot(site: Path, server: LoopbackServer, cache_dir: Path) -> None:
    """A server that answers Item A, then Item B: the model run and the report are both A's; B is never fetched."""
    for name in ("a", "b"):
        document = json.loads((site / name / "item.json").read_text())
        for asset in document["assets"].values():
            asset["href"] = f"{server.url}/{name}/{asset['href'].removeprefix('./')}"
        (site / f"{name}.json").write_text(json.dumps(document))
    server.sequence["/item.json"] = ["/a.json", "/b.json"]
    a, b = model_asset(site / "a.json"), model_asset(site / "b.json")
    report = check_item(f"{server.url}/item.json")
    assert report.ok and report.artifact == cache_dir / a["file:checksum"]
    assert server.hits["/item.json"] == 1
    assert server.hits[b["href"].removeprefix(server.url)] == 0
    model = load_model(f"{server.url}/item.json")  # the second answer: B, loaded from B's own artifact
    torch.manual_seed(2)
    expected = tm.TinyMLP(in_features=6, num_classes=3).eval()
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), expected(x))
    assert server.hits[b["href"].removeprefix(server.url)] == 1


def test_a_dict_whose_self_link_is_remote_may_not_name_local_files(site: Path, tmp_path: Path) -> None:
    """Point 10: the API Item's href file:///.../id_rsa is refused, not opened, hashed or loaded."""
    document = json.loads((site / "a" / "item.json").read_text())
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    shutil.copyfile(site / "a" / model_asset(site / "a" / "item.json")["href"], secret)  # a loadable file
    document["assets"]["model"]["href"] = secret.as_uri()
    document["links"] = [{"rel": "self", "href": "http://127.0.0.1:9/collections/c/items/a"}]  # nothing listens
    for verify in (True, False):
        with pytest.raises(ItemValidationError, match="may not name local files") as caught:
            load_model(document, verify=verify)
        assert sha256_hex(secret) not in str(caught.value)
    item = pystac.Item.from_dict(document)
    item.set_self_href("http://127.0.0.1:9/collections/c/items/a")
    with pytest.raises(ItemValidationError, match="may not name local files"):
        check_item(item, allow_outside=[secret.parent])
    del document["links"]  # no location at all: the caller's own dict, its absolute local paths are used as given
    assert check_item(document).ok
