"""The content-addressed artifact cache: verified while written, atomic, nothing partial left behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mlm_export.artifact_cache import cache_entry, cached_artifact, default_cache_dir, store_verified
from mlm_export.errors import ChecksumMismatchError, ConfigurationError

DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA256 = "1220" + hashlib.sha256(DATA).hexdigest()
SHA512 = "1340" + hashlib.sha512(DATA).hexdigest()


def chunks(data: bytes, size: int = 65536) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("checksum", [SHA256, SHA512])
def test_store_then_reuse(tmp_path: Path, checksum: str) -> None:
    seen: list[int] = []
    path = store_verified(chunks(DATA), checksum=checksum, size=len(DATA), source="test", cache_dir=tmp_path,
                          on_chunk=seen.append)  # fmt: skip
    assert path == tmp_path / checksum and path.read_bytes() == DATA
    assert sum(seen) == len(DATA)
    assert cached_artifact(checksum, len(DATA), tmp_path) == path
    assert os.listdir(tmp_path) == [checksum]


@pytest.mark.parametrize(
    ("data", "size", "match"),
    [
        (DATA[:-1] + b"x", len(DATA), "checksum"),  # same size, other bytes
        (DATA[:-5], len(DATA), "sent 3145740 bytes"),  # cut short
        (DATA + b"more", len(DATA), "more than"),  # longer than file:size: stopped early
    ],
)
def test_mismatch_leaves_nothing(tmp_path: Path, data: bytes, size: int, match: str) -> None:
    with pytest.raises(ChecksumMismatchError, match=match):
        store_verified(chunks(data), checksum=SHA256, size=size, source="http://h/m.bin", cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []
    assert cached_artifact(SHA256, size, tmp_path) is None


def test_changed_entry_is_dropped(tmp_path: Path) -> None:
    path = store_verified(chunks(DATA), checksum=SHA256, size=len(DATA), source="t", cache_dir=tmp_path)
    path.write_bytes(DATA[::-1])
    assert cached_artifact(SHA256, len(DATA), tmp_path) is None
    assert not path.exists()
    store_verified(chunks(DATA), checksum=SHA256, size=len(DATA), source="t", cache_dir=tmp_path)
    assert cached_artifact(SHA256, len(DATA) + 1, tmp_path) is None  # another size: not this entry


def test_failing_source_leaves_nothing(tmp_path: Path) -> None:
    def broken():
        yield DATA[:1000]
        raise ConnectionResetError("peer went away")

    with pytest.raises(ConnectionResetError):
        store_verified(broken(), checksum=SHA256, size=len(DATA), source="t", cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("checksum", ["1220abc", "../../etc/passwd", "d41d8cd98f00b204e9800998ecf8427e", ""])
def test_entry_names_are_multihashes_only(tmp_path: Path, checksum: str) -> None:
    with pytest.raises(ConfigurationError, match="multihash"):
        cache_entry(checksum, tmp_path)


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLM_EXPORT_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache" and (tmp_path / "env-cache").is_dir()
    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MLM_EXPORT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mlm-export" / "artifacts"


def test_every_hand_out_is_verified_even_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    """Bytes rewritten in place, size and mtime kept (inode too): the next hand-out in this process refuses them."""
    path = store_verified(chunks(DATA), checksum=SHA256, size=len(DATA), source="t", cache_dir=tmp_path)
    assert cached_artifact(SHA256, len(DATA), tmp_path) == path  # first hand-out
    before = path.stat()
    with open(path, "r+b") as stream:
        stream.seek(len(DATA) // 2)
        stream.write(b"\xff" if DATA[len(DATA) // 2] != 0xFF else b"\x00")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert cached_artifact(SHA256, len(DATA), tmp_path) is None  # refused, and dropped for a new download
    assert not path.exists()
