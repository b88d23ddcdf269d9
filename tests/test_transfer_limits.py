"""Bounded downloads against a hostile loopback server: endless bodies, trickles, stalls, a total timeout.

Each bound is set small through arguments (a fraction of a second, a few MiB), so nothing here waits long; the
server's bodies end with the test whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_http import HostileServer, endless, held, static, trickle

from mlm_export import check_item, load_model
from mlm_export.cli import main
from mlm_export.download_limits import DownloadLimits
from mlm_export.errors import ChecksumMismatchError, DownloadLimitError
from mlm_export.transfer import fetch_artifact, fetch_item_document

# Loopback servers only; an empty artifact cache per test (conftest.cache_dir): every remote case downloads.
pytestmark = [pytest.mark.allow_hosts(["127.0.0.1"]), pytest.mark.usefixtures("cache_dir")]

MiB = 2**20
#: A checksum no body here has: whatever arrives is refused in the end, the bounds must stop it first.
NOWHERE = "1220" + hashlib.sha256(b"never sent").hexdigest()


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        yield running


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def item_document(url: str, asset: dict) -> dict:
    """A minimal remote Item whose model asset is ``asset`` (href relative to the Item's URL)."""
    model = {"href": "./model.pt2", "roles": ["mlm:model"], "mlm:artifact_type": "torch.export.save", **asset}
    tensor = {"shape": [-1, 4], "dim_order": ["batch", "channel"], "data_type": "float32"}
    properties = {"mlm:input": [{"name": "x", "input": tensor}], "mlm:output": [{"name": "y", "result": tensor}]}
    return {"type": "Feature", "stac_version": "1.0.0", "id": "hostile", "properties": properties, "geometry": None,
            "stac_extensions": ["https://stac-extensions.github.io/mlm/v1.5.2/schema.json"],
            "links": [{"rel": "self", "href": f"{url}/item.json"}], "assets": {"model": model}}  # fmt: skip


# -- point 3: size ----------------------------------------------------------------------------------------------


def test_an_endless_body_without_file_size_stops_at_the_cap(server: HostileServer, cache_dir: Path) -> None:
    server.routes["/model.pt2"] = endless()
    url = f"{server.url}/model.pt2"
    with pytest.raises(DownloadLimitError, match="max_download_size=1048576") as info:
        fetch_artifact(url, size=None, checksum=NOWHERE, limits=DownloadLimits(max_size=MiB))
    assert info.value.limit == "max_download_size" and info.value.url == url
    assert url in str(info.value) and "--max-download-size" in str(info.value)
    assert leftovers(cache_dir) == []  # nothing partial kept


def test_the_default_cap_comes_from_the_environment_and_get_exits_1(
    server: HostileServer, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`mlm-export get` of an Item with file:checksum but no file:size: the body would be endless."""
    server.routes["/model.pt2"] = endless()
    server.routes["/item.json"] = static(json.dumps(item_document(server.url, {"file:checksum": NOWHERE})).encode())
    monkeypatch.setenv("MLM_EXPORT_MAX_DOWNLOAD_SIZE", "2MiB")
    started = time.monotonic()
    assert main(["get", f"{server.url}/item.json", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "--max-download-size 2097152" in err and f"{server.url}/model.pt2" in err, err
    assert time.monotonic() - started < 10
    assert leftovers(cache_dir) == []
    monkeypatch.delenv("MLM_EXPORT_MAX_DOWNLOAD_SIZE")
    assert main(["get", f"{server.url}/item.json", "-o", str(tmp_path / "out"), "--max-download-size", "1MiB"]) == 1
    assert "--max-download-size 1048576" in capsys.readouterr().err  # the CLI names its flag


def test_an_announced_or_stated_size_over_the_cap_is_refused_before_reading(server: HostileServer) -> None:
    server.routes["/big.bin"] = endless(length=10 * MiB)
    url = f"{server.url}/big.bin"
    with pytest.raises(DownloadLimitError, match="announces 10485760 bytes"):
        fetch_artifact(url, size=None, checksum=NOWHERE, limits=DownloadLimits(max_size=MiB))
    with pytest.raises(DownloadLimitError, match="file:size, 10485760 bytes"):
        fetch_artifact(url, size=10 * MiB, checksum=NOWHERE, limits=DownloadLimits(max_size=MiB))
    assert server.hits["/big.bin"] == 1  # the stated size was refused without a request


def test_a_body_longer_than_file_size_is_stopped_just_past_it(server: HostileServer, cache_dir: Path) -> None:
    server.routes["/model.pt2"] = endless()  # no Content-Length: only the reading can tell
    with pytest.raises(ChecksumMismatchError, match="more than the 1000 bytes"):
        fetch_artifact(f"{server.url}/model.pt2", size=1000, checksum=NOWHERE)
    assert leftovers(cache_dir) == []


# -- point 4: rate and time -------------------------------------------------------------------------------------


def test_a_trickling_body_fails_on_the_minimum_rate(server: HostileServer, cache_dir: Path) -> None:
    server.routes["/model.pt2"] = trickle(MiB, every=0.01, step=16)  # ~1.6 KB/s, for ever
    limits = DownloadLimits(min_rate=10_000, rate_window=0.5)
    started = time.monotonic()
    with pytest.raises(DownloadLimitError, match="too slow") as info:
        fetch_artifact(f"{server.url}/model.pt2", size=MiB, checksum=NOWHERE, limits=limits)
    elapsed = time.monotonic() - started
    assert info.value.limit == "min_download_rate"
    assert 0.5 <= elapsed < 3, elapsed
    assert "10000 B/s" in str(info.value) and "MLM_EXPORT_MIN_DOWNLOAD_RATE" in str(info.value)
    assert leftovers(cache_dir) == []


def test_a_stalled_body_fails_after_one_window(server: HostileServer) -> None:
    server.routes["/model.pt2"] = held(b"x" * 4096, 100)
    started = time.monotonic()
    with pytest.raises(DownloadLimitError, match="0 bytes in the last") as info:
        fetch_artifact(f"{server.url}/model.pt2", size=4096, checksum=NOWHERE,
                       limits=DownloadLimits(min_rate=1000, rate_window=0.5))  # fmt: skip
    assert info.value.limit == "min_download_rate"
    assert time.monotonic() - started < 3


def test_a_fast_enough_download_passes_its_bounds(server: HostileServer, cache_dir: Path) -> None:
    data = bytes(range(256)) * 4096
    server.routes["/model.pt2"] = static(data)
    checksum = "1220" + hashlib.sha256(data).hexdigest()
    limits = DownloadLimits(max_size=len(data), min_rate=10_000, rate_window=0.5, timeout=10)
    path = fetch_artifact(f"{server.url}/model.pt2", size=None, checksum=checksum, limits=limits)
    assert path.read_bytes() == data


def test_download_timeout_stops_load_model_on_a_trickle_even_above_the_rate(server: HostileServer) -> None:
    """The trickle keeps the default minimum rate at bay only for the window: the total timeout ends it."""
    server.routes["/item.json"] = static(
        json.dumps(item_document(server.url, {"file:checksum": NOWHERE, "file:size": 50 * MiB})).encode()
    )
    server.routes["/model.pt2"] = trickle(50 * MiB, every=0.01, step=4096)  # ~400 KB/s: above 32 KiB/s
    started = time.monotonic()
    with pytest.raises(DownloadLimitError, match="download_timeout=1 s") as info:
        load_model(f"{server.url}/item.json", download_timeout=1.0)
    assert info.value.limit == "download_timeout" and "--download-timeout" in str(info.value)
    assert 1.0 <= time.monotonic() - started < 3


def test_download_timeout_cuts_a_read_that_blocks(server: HostileServer) -> None:
    """The body stalls after the request started with a long read timeout: the timer shuts the socket."""
    server.routes["/model.pt2"] = held(b"x" * 4096, 100)
    limits = DownloadLimits(min_rate=0, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(DownloadLimitError, match="download_timeout"):
        fetch_artifact(f"{server.url}/model.pt2", size=4096, checksum=NOWHERE, limits=limits)
    assert time.monotonic() - started < 2.5


def test_the_item_fetch_is_bounded_too(server: HostileServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.routes["/item.json"] = trickle(100_000, every=0.01, step=1, first=b'{"type": "Feature", "id": "')
    with pytest.raises(DownloadLimitError, match="too slow"):
        fetch_item_document(f"{server.url}/item.json", limits=DownloadLimits(min_rate=5000, rate_window=0.5))
    started = time.monotonic()
    with pytest.raises(DownloadLimitError, match="download_timeout"):
        check_item(f"{server.url}/item.json", download_timeout=0.5)
    assert main(["check", f"{server.url}/item.json", "--download-timeout", "0.5"]) == 1
    assert "--download-timeout 0.5 s" in capsys.readouterr().err  # the CLI names its flag
    assert time.monotonic() - started < 5


def test_check_of_an_item_url_takes_the_size_cap(server: HostileServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.routes["/item.json"] = static(json.dumps(item_document(server.url, {"file:checksum": NOWHERE})).encode())
    server.routes["/model.pt2"] = endless()
    assert main(["check", f"{server.url}/item.json", "--max-download-size", "1MiB"]) == 1
    assert "--max-download-size 1048576" in capsys.readouterr().err  # the CLI names its flag
    with pytest.raises(DownloadLimitError, match="max_download_size=65536"):
        check_item(f"{server.url}/item.json", max_download_size="64KiB")
