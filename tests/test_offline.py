"""`mlm-export get` / download_item: malformed Items are typed errors (exit 1), and the bytes written are verified
while they are copied out of the cache."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_http import HostileServer, static

from mlm_export.cli import main
from mlm_export.errors import ChecksumMismatchError, ItemValidationError
from mlm_export.offline import _place, download_item

# Loopback servers only; an empty artifact cache per test (conftest.cache_dir): every remote case downloads.
pytestmark = [pytest.mark.allow_hosts(["127.0.0.1"]), pytest.mark.usefixtures("cache_dir")]

DATA = b"weights " * 77  # 616 bytes
CHECKSUM = "1220" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        running.routes["/model.bin"] = static(DATA)
        yield running


def serve_item(server: HostileServer, assets: object) -> str:
    document = {"type": "Feature", "stac_version": "1.0.0", "id": "m", "properties": {}, "geometry": None,
                "links": [], "assets": assets}  # fmt: skip
    server.routes["/item.json"] = static(json.dumps(document).encode())
    return f"{server.url}/item.json"


def asset(**fields: object) -> dict:
    return {"href": "./model.bin", "roles": ["mlm:model"], "file:size": len(DATA), "file:checksum": CHECKSUM, **fields}


@pytest.mark.parametrize(
    ("assets", "pointer"),
    [
        ([asset()], "/assets: must be an object"),  # assets as a list
        ({"model": "./model.bin"}, "/assets/model: must be an object"),  # an asset as a string
        ({"model": asset(**{"file:checksum": 1220})}, "/assets/model/file:checksum: must be a string"),
        ({"model": asset(**{"file:size": "616"})}, "/assets/model/file:size: must be a non-negative integer"),
        ({"model": asset(**{"file:size": True})}, "/assets/model/file:size: must be a non-negative integer"),
        ({"model": asset(**{"file:size": -1})}, "/assets/model/file:size: must be a non-negative integer"),
    ],
)
def test_get_of_a_malformed_item_exits_1_with_one_line(
    server: HostileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], assets: object, pointer: str
) -> None:
    url = serve_item(server, assets)
    assert main(["get", url, "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and pointer in err and url in err, err
    assert server.hits["/model.bin"] == 0  # refused before any artifact was requested
    with pytest.raises(ItemValidationError, match="malformed"):
        download_item(url, tmp_path / "out")


def test_a_well_formed_item_is_fetched(server: HostileServer, tmp_path: Path) -> None:
    path = download_item(serve_item(server, {"model": asset()}), tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == DATA
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out" / "model.bin").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert json.loads(path.read_text())["assets"]["model"]["href"] == "./model.bin"
    assert not list((tmp_path / "out").glob(".*.part"))


@pytest.mark.parametrize("size", ["616", 616.0, True, -5])
def test_fetch_artifact_refuses_a_file_size_of_the_wrong_type(server: HostileServer, size: object) -> None:
    from mlm_export.transfer import fetch_artifact

    with pytest.raises(ItemValidationError, match="non-negative integer"):
        fetch_artifact(f"{server.url}/model.bin", size=size, checksum=CHECKSUM)  # type: ignore[arg-type]
    with pytest.raises(ItemValidationError, match="multihash string"):
        fetch_artifact(f"{server.url}/model.bin", size=616, checksum=1220)  # type: ignore[arg-type]
    assert server.hits["/model.bin"] == 0


def test_place_verifies_the_bytes_it_copies(tmp_path: Path) -> None:
    """A cache entry altered after its verification is not copied out (nothing written, no .part left)."""
    source = tmp_path / "entry"
    source.write_bytes(DATA[:-1] + b"X")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ChecksumMismatchError, match="nothing was written"):
        _place(source, out / "model.bin", CHECKSUM, overwrite=False)
    assert os.listdir(out) == []
    source.write_bytes(DATA)
    _place(source, out / "model.bin", CHECKSUM, overwrite=False)
    assert (out / "model.bin").read_bytes() == DATA and os.listdir(out) == ["model.bin"]


def test_place_removes_the_leftover_of_a_killed_copy(tmp_path: Path) -> None:
    source = tmp_path / "entry"
    source.write_bytes(DATA)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".model.bin.k1ll3d_x.part").write_bytes(DATA[:100])  # no writer holds its lock
    (out / ".notes.part").write_bytes(b"someone else's")
    _place(source, out / "model.bin", CHECKSUM, overwrite=False)
    assert sorted(os.listdir(out)) == [".notes.part", "model.bin"]
