"""Remote artifacts: verified download into the cache (real loopback HTTP server), upload to S3 (moto's real server
on loopback) and file://, `mlm-export get`."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pystac
import pytest
import torch
import torch_models as tm
from loopback import LoopbackServer, fetch_in_child
from moto_s3 import s3_endpoint, s3_environment  # noqa: F401 - s3_endpoint is a fixture

from mlm_export import check_item, export_item, load_model, save_item
from mlm_export.cli import main
from mlm_export.download_limits import DownloadLimits
from mlm_export.errors import (
    ArtifactNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    DownloadError,
    DownloadLimitError,
    ItemValidationError,
    OutputExistsError,
)
from mlm_export.offline import download_item
from mlm_export.transfer import RedirectWarning, _follow, fetch_artifact, upload_artifacts

# Loopback servers only; an empty artifact cache per test (conftest.cache_dir): every remote case downloads.
pytestmark = [pytest.mark.allow_hosts(["127.0.0.1"]), pytest.mark.usefixtures("cache_dir")]


def sha256_multihash(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding item.json and its torch.export artifact (relative href)."""
    directory = tmp_path_factory.mktemp("site")
    torch.manual_seed(0)
    item = export_item(tm.TinyMLP(in_features=6, num_classes=3), input_shape=[-1, 6], artifact_dir=directory,
                       artifact_format="torch.export")  # fmt: skip
    save_item(item, directory / "item.json")
    return directory


@pytest.fixture
def site(exported: Path, tmp_path: Path) -> Path:
    """A private copy of the exported Item and artifact (tests may alter it)."""
    return Path(shutil.copytree(exported, tmp_path / "site"))


@pytest.fixture
def server(site: Path) -> Iterator[LoopbackServer]:
    with LoopbackServer(site) as running:
        yield running


def model_asset(site: Path) -> tuple[str, dict]:
    document = json.loads((site / "item.json").read_text())
    return next((k, a) for k, a in document["assets"].items() if "mlm:model" in a["roles"])


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# -- download over HTTP ---------------------------------------------------------------------------------------------


def test_load_model_from_item_url_downloads_verifies_and_reuses_cache(
    site: Path, server: LoopbackServer, cache_dir: Path
) -> None:
    key, asset = model_asset(site)
    artifact_path = "/" + asset["href"].removeprefix("./")
    model = load_model(f"{server.url}/item.json")
    assert tuple(model(torch.randn(4, 6)).shape) == (4, 3)
    assert server.hits[artifact_path] == 1
    expected = sha256_multihash(site / asset["href"])
    assert cache_files(cache_dir) == [expected]
    assert (cache_dir / expected).read_bytes() == (site / asset["href"]).read_bytes()
    report = check_item(f"{server.url}/item.json")
    assert report.ok, str(report)
    assert server.hits[artifact_path] == 1  # reused: no second request for the artifact


def test_load_model_from_api_style_dict_and_pystac_item(site: Path, server: LoopbackServer) -> None:
    document = json.loads((site / "item.json").read_text())
    document["links"] = [{"rel": "self", "href": f"{server.url}/item.json", "type": "application/json"}]
    assert tuple(load_model(document)(torch.randn(2, 6)).shape) == (2, 3)
    item = pystac.Item.from_file(f"{server.url}/item.json")
    assert check_item(item).ok


def test_absolute_http_href(site: Path, server: LoopbackServer, cache_dir: Path) -> None:
    key, asset = model_asset(site)
    url = f"{server.url}/{asset['href'].removeprefix('./')}"
    path = fetch_artifact(url, size=asset["file:size"], checksum=asset["file:checksum"])
    assert path == cache_dir / asset["file:checksum"]
    assert sha256_multihash(path) == asset["file:checksum"]


def test_files_next_to_an_item_exported_with_href_base_are_used(tmp_path: Path, cache_dir: Path) -> None:
    torch.manual_seed(0)
    # port 9 (discard) on loopback: nothing listens; a download attempt would fail
    item = export_item(tm.TinyMLP(in_features=6, num_classes=3), input_shape=[-1, 6], artifact_dir=tmp_path,
                       artifact_format="torch.export", href_base="http://127.0.0.1:9/models")  # fmt: skip
    saved = save_item(item, tmp_path / "item.json")
    assert check_item(saved).ok
    assert cache_files(cache_dir) == []


def test_checksum_mismatch_removes_the_download(site: Path, server: LoopbackServer, cache_dir: Path) -> None:
    key, asset = model_asset(site)
    artifact = site / asset["href"]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    artifact.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="removed") as info:
        load_model(f"{server.url}/item.json")
    assert asset["file:checksum"] in str(info.value)
    assert cache_files(cache_dir) == []


def test_size_mismatch_is_refused_before_download(site: Path, server: LoopbackServer, cache_dir: Path) -> None:
    key, asset = model_asset(site)
    (site / asset["href"]).write_bytes(b"short")
    with pytest.raises(ChecksumMismatchError, match="file:size"):
        load_model(f"{server.url}/item.json")
    assert cache_files(cache_dir) == []


def test_tampered_cache_entry_is_replaced(site: Path, server: LoopbackServer, cache_dir: Path) -> None:
    key, asset = model_asset(site)
    url = f"{server.url}/{asset['href'].removeprefix('./')}"
    path = fetch_artifact(url, size=asset["file:size"], checksum=asset["file:checksum"])
    path.write_bytes(b"x" * asset["file:size"])
    again = fetch_artifact(url, size=asset["file:size"], checksum=asset["file:checksum"])
    assert sha256_multihash(again) == asset["file:checksum"]
    assert server.hits["/" + asset["href"].removeprefix("./")] == 2


def test_artifact_404(site: Path, server: LoopbackServer) -> None:
    key, asset = model_asset(site)
    (site / asset["href"]).unlink()
    with pytest.raises(ArtifactNotFoundError, match="404") as info:
        load_model(f"{server.url}/item.json")
    assert server.url in str(info.value)


def test_item_url_404(server: LoopbackServer) -> None:
    with pytest.raises(ArtifactNotFoundError, match="missing.json"):
        load_model(f"{server.url}/missing.json")


def test_unreachable_server() -> None:
    with pytest.raises(DownloadError, match="127.0.0.1:9"):
        fetch_artifact("http://127.0.0.1:9/m.pt", size=1, checksum="1220" + "0" * 64)


def test_a_body_cut_midway_is_reported_and_not_cached(site: Path, server: LoopbackServer, cache_dir: Path) -> None:
    key, asset = model_asset(site)
    path = "/" + asset["href"].removeprefix("./")
    server.cut[path] = asset["file:size"] // 2
    with pytest.raises(DownloadError, match="failed midway") as info:
        fetch_artifact(server.url + path, size=asset["file:size"], checksum=asset["file:checksum"])
    assert server.url + path in str(info.value)
    assert cache_files(cache_dir) == []


def test_downloads_go_through_the_proxy_the_environment_names(
    site: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, asset = model_asset(site)
    monkeypatch.setenv("http_proxy", server.url)
    monkeypatch.setenv("no_proxy", "")
    url = "http://models.example.invalid/" + asset["href"].removeprefix("./")  # resolvable only by the proxy
    path = fetch_artifact(url, size=asset["file:size"], checksum=asset["file:checksum"])
    assert sha256_multihash(path) == asset["file:checksum"]
    assert server.proxied == [url]


def test_remote_artifact_without_checksum_is_refused(site: Path, server: LoopbackServer) -> None:
    document = json.loads((site / "item.json").read_text())
    key, _ = model_asset(site)
    del document["assets"][key]["file:checksum"]
    document["links"] = [{"rel": "self", "href": f"{server.url}/item.json"}]
    with pytest.raises(ItemValidationError, match="no file:checksum"):
        load_model(document)


def test_same_host_redirect_is_followed(site: Path, server: LoopbackServer) -> None:
    key, asset = model_asset(site)
    server.redirects["/moved.pt"] = "/" + asset["href"].removeprefix("./")
    path = fetch_artifact(f"{server.url}/moved.pt", size=asset["file:size"], checksum=asset["file:checksum"])
    assert sha256_multihash(path) == asset["file:checksum"]


def test_cross_host_redirect_to_http_is_refused(site: Path, server: LoopbackServer, cache_dir: Path) -> None:
    key, asset = model_asset(site)
    port = server.server_address[1]
    server.redirects["/moved.pt"] = f"http://localhost:{port}/{asset['href'].removeprefix('./')}"
    with pytest.raises(DownloadError, match="another host") as info:
        fetch_artifact(f"{server.url}/moved.pt", size=asset["file:size"], checksum=asset["file:checksum"])
    assert "localhost" in str(info.value)
    assert server.hits["/" + asset["href"].removeprefix("./")] == 0
    assert cache_files(cache_dir) == []


def test_redirect_rules() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _follow("http://a.example/m", "https://b.example/m", "u") == "https://b.example/m"
    assert [w.category for w in caught] == [RedirectWarning]
    assert "https://b.example/m" in str(caught[0].message)
    assert _follow("https://a.example/x/m", "../n", "u") == "https://a.example/n"
    with pytest.raises(DownloadError, match="plain http"):
        _follow("https://a.example/m", "http://a.example/m", "u")
    with pytest.raises(DownloadError, match="not http"):
        _follow("https://a.example/m", "ftp://a.example/m", "u")
    with pytest.raises(DownloadError, match="credentials") as info:
        _follow("https://a.example/m", "https://u:pw@b.example/m", "u")
    assert "pw" not in str(info.value)


def test_redirect_loop_is_bounded(server: LoopbackServer) -> None:
    server.redirects["/a"] = "/b"
    server.redirects["/b"] = "/a"
    with pytest.raises(DownloadError, match="redirects more than"):
        fetch_artifact(f"{server.url}/a", size=1, checksum="1220" + "0" * 64)
    assert server.hits["/a"] + server.hits["/b"] == 6


def test_href_with_credentials_is_refused(site: Path, server: LoopbackServer) -> None:
    document = json.loads((site / "item.json").read_text())
    key, _ = model_asset(site)
    document["assets"][key]["href"] = server.url.replace("//", "//alice:s3cret@") + "/model.pt2"
    with pytest.raises(ConfigurationError, match="credentials") as info:
        load_model(document)
    assert "s3cret" not in str(info.value)
    assert sum(server.hits.values()) == 0


def test_concurrent_downloads_of_one_artifact(site: Path, server: LoopbackServer, cache_dir: Path) -> None:
    key, asset = model_asset(site)
    url = f"{server.url}/{asset['href'].removeprefix('./')}"
    jobs = [(url, asset["file:size"], asset["file:checksum"], str(cache_dir))] * 8
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        threaded = set(pool.map(fetch_in_child, jobs))
    (cache_dir / asset["file:checksum"]).unlink()
    with concurrent.futures.ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        processes = set(pool.map(fetch_in_child, jobs[:3]))
    assert threaded == processes == {str(cache_dir / asset["file:checksum"])}
    assert cache_files(cache_dir) == [asset["file:checksum"]]  # no partial file left
    assert sha256_multihash(cache_dir / asset["file:checksum"]) == asset["file:checksum"]


# -- mlm-export get -------------------------------------------------------------------------------------------------


def test_cli_get_downloads_for_offline_use(
    site: Path, server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, asset = model_asset(site)
    out = tmp_path / "offline"
    assert main(["get", f"{server.url}/item.json", "-o", str(out)]) == 0
    item_path = Path(capsys.readouterr().out.strip())
    document = json.loads(item_path.read_text())
    name = Path(asset["href"]).name
    assert document["assets"][key]["href"] == f"./{name}"
    assert (out / name).read_bytes() == (site / asset["href"]).read_bytes()
    server.shutdown()  # offline from here on
    server.server_close()
    assert check_item(item_path).ok
    assert main(["get", f"{server.url}/item.json", "-o", str(out)]) == 1  # exists; and the server is gone


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_cli_get_of_a_bad_artifact_exits_1_and_writes_nothing(
    site: Path, server: LoopbackServer, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str],
    damage: str,
) -> None:  # fmt: skip
    key, asset = model_asset(site)
    artifact = site / asset["href"]
    if damage == "missing":
        artifact.unlink()
    else:
        data = bytearray(artifact.read_bytes())
        data[-1] ^= 0xFF
        artifact.write_bytes(bytes(data))
    out = tmp_path / "offline"
    assert main(["get", f"{server.url}/item.json", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{server.url}/" in err[0] and ("404" if damage == "missing" else "checksum") in err[0], err
    assert not out.exists() or not any(out.rglob("*"))
    assert cache_files(cache_dir) == []


def test_download_item_refuses_to_overwrite_other_bytes(site: Path, server: LoopbackServer, tmp_path: Path) -> None:
    key, asset = model_asset(site)
    out = tmp_path / "offline"
    out.mkdir()
    (out / Path(asset["href"]).name).write_bytes(b"someone else's file")
    with pytest.raises(OutputExistsError):
        download_item(f"{server.url}/item.json", out)
    assert (out / Path(asset["href"]).name).read_bytes() == b"someone else's file"
    assert not (out / "item.json").exists() and not list(out.glob("*.json"))


# -- upload ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def s3_bucket(
    s3_endpoint: str,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> str:
    for name, value in s3_environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    bucket = request.node.name.replace("_", "-")[:60].lower()
    httpx.put(f"{s3_endpoint}/{bucket}").raise_for_status()
    return bucket


def test_upload_to_s3_then_load_and_check(site: Path, s3_bucket: str, cache_dir: Path) -> None:
    document = json.loads((site / "item.json").read_text())
    key, asset = model_asset(site)
    uploaded = upload_artifacts(document, site, f"s3://{s3_bucket}/models")
    name = Path(asset["href"]).name
    assert uploaded["assets"][key]["href"] == f"s3://{s3_bucket}/models/{document['id']}/{name}"
    assert document["assets"][key]["href"] == asset["href"]  # input untouched
    assert tuple(load_model(uploaded)(torch.randn(3, 6)).shape) == (3, 3)
    assert check_item(uploaded).ok
    assert cache_files(cache_dir) == [asset["file:checksum"]]
    # once more: same bytes are kept, not re-sent
    assert upload_artifacts(document, site, f"s3://{s3_bucket}/models") == uploaded


def test_upload_never_replaces_other_bytes(site: Path, s3_bucket: str) -> None:
    document = json.loads((site / "item.json").read_text())
    key, asset = model_asset(site)
    first = upload_artifacts(document, site, f"s3://{s3_bucket}/m")
    artifact = site / asset["href"]
    artifact.write_bytes(artifact.read_bytes() + b"changed")
    document["assets"][key].update({"file:size": artifact.stat().st_size, "file:checksum": sha256_multihash(artifact)})
    with pytest.raises(OutputExistsError, match="not replacing"):
        upload_artifacts(document, site, f"s3://{s3_bucket}/m")
    # the first Item still loads: its object was not replaced
    assert load_model(first) is not None


def test_upload_large_file_is_multipart(tmp_path: Path, s3_bucket: str) -> None:
    import obstore
    from obstore.store import S3Store

    data = os.urandom(20 * 1024 * 1024)  # above MULTIPART_THRESHOLD (16 MiB): 3 parts of 8 MiB
    (tmp_path / "big.bin").write_bytes(data)
    checksum = "1220" + hashlib.sha256(data).hexdigest()
    document = {"id": "big", "assets": {"weights": {"href": "big.bin", "file:size": len(data),
                                                    "file:checksum": checksum}}}  # fmt: skip
    uploaded = upload_artifacts(document, tmp_path, f"s3://{s3_bucket}/p", progress=True)
    assert uploaded["assets"]["weights"]["href"] == f"s3://{s3_bucket}/p/big/big.bin"
    head = obstore.head(S3Store(s3_bucket), "p/big/big.bin")
    assert head["size"] == len(data) and head["e_tag"].endswith('-3"')
    path = fetch_artifact(uploaded["assets"]["weights"]["href"], size=len(data), checksum=checksum)
    assert path.read_bytes() == data


def test_s3_download_size_is_capped(s3_bucket: str, cache_dir: Path) -> None:
    import obstore
    from obstore.store import S3Store

    data = os.urandom(3 * 1024 * 1024)
    obstore.put(S3Store(s3_bucket), "big.bin", data)
    checksum = "1220" + hashlib.sha256(data).hexdigest()
    url = f"s3://{s3_bucket}/big.bin"
    small = DownloadLimits(max_size=1024 * 1024)
    with pytest.raises(DownloadLimitError, match="announces 3145728 bytes") as info:
        fetch_artifact(url, size=None, checksum=checksum, limits=small)  # no file:size: the object's size is checked
    assert info.value.limit == "max_download_size" and info.value.url == url
    with pytest.raises(DownloadLimitError, match="file:size, 3145728 bytes"):
        fetch_artifact(url, size=len(data), checksum=checksum, limits=small)
    assert cache_files(cache_dir) == []
    limits = DownloadLimits(max_size=len(data), min_rate=1000, rate_window=0.5, timeout=30)
    assert fetch_artifact(url, size=None, checksum=checksum, limits=limits).read_bytes() == data


def test_s3_artifact_missing(s3_bucket: str) -> None:
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        fetch_artifact(f"s3://{s3_bucket}/nothing.pt", size=1, checksum="1220" + "0" * 64)


def test_upload_to_file_url_and_public_url(site: Path, tmp_path: Path) -> None:
    document = json.loads((site / "item.json").read_text())
    key, asset = model_asset(site)
    target = tmp_path / "bucket"
    uploaded = upload_artifacts(document, site, target.as_uri())
    name = Path(asset["href"]).name
    copied = target / document["id"] / name
    assert copied.read_bytes() == (site / asset["href"]).read_bytes()
    assert uploaded["assets"][key]["href"] == copied.as_uri()
    assert check_item(uploaded).ok
    public = upload_artifacts(document, site, target.as_uri(), public_url="https://models.example/m")
    assert public["assets"][key]["href"] == f"https://models.example/m/{document['id']}/{name}"


def test_upload_bad_inputs(site: Path, tmp_path: Path) -> None:
    document = json.loads((site / "item.json").read_text())
    key, asset = model_asset(site)
    with pytest.raises(ConfigurationError, match="credentials"):
        upload_artifacts(document, site, "s3://key:secret@bucket/p")
    with pytest.raises(ConfigurationError, match="not s3:// or file://"):
        upload_artifacts(document, site, "ftp://host/p")
    (site / asset["href"]).write_bytes(b"changed")
    with pytest.raises(ChecksumMismatchError, match="nothing uploaded"):
        upload_artifacts(document, site, (tmp_path / "b").as_uri())
    (site / asset["href"]).unlink()
    with pytest.raises(ArtifactNotFoundError, match="nothing uploaded"):
        upload_artifacts(document, site, (tmp_path / "b").as_uri())
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.*"))


def test_readme_remote_example(
    site: Path, server: LoopbackServer, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Remote artifacts and the cache", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("https://models.example.org/items/resnet18.json", f"{server.url}/item.json")
    code = code.replace("s3://my-bucket/", f"s3://{s3_bucket}/")
    key, asset = model_asset(site)
    assert key == "model"
    shutil.copytree(site, tmp_path / "work" / "published")
    monkeypatch.chdir(tmp_path / "work")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    name = Path(asset["href"]).name
    assert (
        namespace["published"]["assets"]["model"]["href"]
        == f"s3://{s3_bucket}/models/{namespace['item_document']['id']}/{name}"
    )
    assert namespace["model"] is not None


def test_item_on_s3_with_relative_hrefs(site: Path, s3_bucket: str, cache_dir: Path) -> None:
    import obstore
    from obstore.store import S3Store

    store = S3Store(s3_bucket)
    for path in site.iterdir():
        obstore.put(store, f"catalog/m/{path.name}", path.read_bytes())
    key, asset = model_asset(site)
    assert not asset["href"].startswith(("s3:", "http"))
    assert check_item(f"s3://{s3_bucket}/catalog/m/item.json").ok
    assert cache_files(cache_dir) == [asset["file:checksum"]]


def test_publish_with_upload_then_load_from_the_stac_api(
    site: Path, s3_bucket: str, cache_dir: Path, schema_dir: Path, stac_api
) -> None:
    """End to end: publish(upload_to=s3) -> pystac-client search -> load_model/check_item on the API's Item."""
    import pystac_client

    from mlm_export.stac.publish import publish

    key, asset = model_asset(site)
    result = publish([site / "item.json"], stac_api.url, "remote-artifacts", upload_to=f"s3://{s3_bucket}/models",
                     schema_dir=schema_dir, progress=False)  # fmt: skip
    item_id = json.loads((site / "item.json").read_text())["id"]
    fetched = httpx.get(result.item_url(item_id)).json()
    assert fetched["assets"][key]["href"] == f"s3://{s3_bucket}/models/{item_id}/{Path(asset['href']).name}"
    hits = list(pystac_client.Client.open(stac_api.url).search(collections=["remote-artifacts"]).items())
    assert [hit.id for hit in hits] == [item_id]
    assert check_item(hits[0]).ok
    assert tuple(load_model(result.item_url(item_id))(torch.randn(2, 6)).shape) == (2, 3)
    assert cache_files(cache_dir) == [asset["file:checksum"]]
