"""Hash first: the model file's hash starts before torch is imported and export_item uses that same hash."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlm_export import hashing
from mlm_export.errors import ArtifactNotFoundError, SourceError
from mlm_export.hashing import hash_file, is_multihash

REPO = Path(__file__).resolve().parents[1]


def test_background_hash_is_handed_over_once(tmp_path: Path) -> None:
    """start_background -> take_background returns the running hash once, with the right digest."""
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 3_000_000)
    future = hashing.start_background(path)
    assert future is not None
    taken = hashing.take_background(path)
    assert taken is future
    assert taken.result().checksum == "1220" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert hashing.take_background(path) is None
    again = hashing.start_background(path)
    assert hashing.start_background(path) is again  # one hash per file, however often it is asked for
    assert hashing.take_background(path) is again


def test_changed_file_is_not_reused(tmp_path: Path) -> None:
    """A file rewritten after the hash started is hashed again (size/mtime differ)."""
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 10)
    hashing.start_background(path)
    path.write_bytes(b"b" * 20)
    assert hashing.take_background(path) is None
    assert hashing.start_background(tmp_path / "missing.bin") is None
    assert hashing.start_background(tmp_path) is None


def test_cli_export_hashes_before_importing_torch(tmp_path: Path) -> None:
    """`mlm-export export FILE` starts hashing while torch is not imported yet; export_item takes that hash."""
    import torch

    path = tmp_path / "mlp.pt"
    torch.save(torch.nn.Linear(4, 2), path)
    script = textwrap.dedent(f"""
        import sys
        from mlm_export import hashing, cli
        seen = []
        original_start, original_take = hashing.start_background, hashing.take_background
        def start(path, **kw):
            seen.append(("start", "torch" in sys.modules))
            return original_start(path, **kw)
        def take(path):
            future = original_take(path)
            seen.append(("take", future is not None))
            return future
        hashing.start_background, hashing.take_background = start, take
        code = cli.main(["export", {str(path)!r}, "--trust-pickle", "--input-shape=-1,4", "-o", {str(tmp_path / "i.json")!r}])
        print(code, seen)
    """)  # noqa: E501
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    code, seen = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert code == "0", result.stderr
    assert seen.startswith("[('start', False)") and seen.endswith("('take', True)]"), seen


def test_multihash_of_text_test(tmp_path: Path) -> None:
    path = tmp_path / "test.txt"
    path.write_bytes(b"test")
    digest = hash_file(path)
    assert digest.checksum == "12209f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert digest.size == 4


def test_hash_matches_hashlib_across_buffer_boundaries(tmp_path: Path) -> None:
    data = os.urandom(8 * 1024 * 1024 * 2 + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = hash_file(path, progress=False)
    assert digest.checksum == "1220" + hashlib.sha256(data).hexdigest()
    assert digest.size == os.path.getsize(path)
    assert is_multihash(digest.checksum)


def test_hash_progress_bar_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 1000)
    assert hash_file(path, progress=True).checksum == "1220" + hashlib.sha256(b"x" * 1000).hexdigest()
    assert "sha256 blob.bin" in capsys.readouterr().err


def test_hash_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="missing.bin"):
        hash_file(tmp_path / "missing.bin")
    with pytest.raises(SourceError, match="not a regular file"):
        hash_file(tmp_path)


@pytest.mark.parametrize(
    ("checksum", "ok"),
    [
        ("1220" + "ab" * 32, True),
        ("ab" * 32, False),
        ("1220" + "AB" * 32, False),
        ("1220" + "ab" * 31, False),
        ("1340" + "ab" * 64, True),
        ("1114" + "ab" * 20, True),
        ("zz", False),
    ],
)
def test_is_multihash(checksum: str, ok: bool) -> None:
    assert is_multihash(checksum) is ok


def test_child_hash_matches_and_refuses_what_it_cannot_vouch_for(tmp_path: Path) -> None:
    """The child interpreter's digest is sha256's; a size that no longer matches or a missing file gives None."""
    path = tmp_path / "weights.bin"
    data = bytes(range(256)) * 9000
    path.write_bytes(data)
    digest = hashing._hash_in_child(str(path), len(data))
    assert digest is not None
    assert digest.checksum == "1220" + hashlib.sha256(data).hexdigest()
    assert digest.size == len(data)
    assert hashing._hash_in_child(str(path), len(data) + 1) is None  # changed since it was measured
    assert hashing._hash_in_child(str(tmp_path / "gone.bin"), 1) is None


def test_a_large_file_shows_its_bar_on_a_terminal_that_reports_no_size(tmp_path: Path) -> None:
    """On a terminal (here a fresh pseudo-terminal: 0 columns until resized), a file over the threshold gets a bar."""
    from terminal import run_on_terminal

    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 << 20))
    script = f"""import mlm_export.hashing as h
h.PROGRESS_THRESHOLD = 1 << 20  # the README's 100 MB, scaled down: the same code path for a 3 MiB file
digest = h.start_background({str(path)!r}).result()
print("size", digest.size)
"""
    package_root = Path(hashing.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(package_root), "COLUMNS": "120"}
    code, output = run_on_terminal([sys.executable, "-c", script], env, timeout=60)
    assert code == 0, output
    assert f"size {3 << 20}" in output
    assert "sha256 big.bin" in output and "/3.00M" in output  # the bar was drawn (and erased when done)


def _bytes_read() -> int:
    """Bytes this process has read so far (``rchar`` of /proc/self/io: every read, page cache included)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def _sha(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts reads with /proc/self/io (Linux)")
def test_an_unchanged_file_is_read_once_and_any_change_is_hashed_again(tmp_path: Path) -> None:
    """Second hash (and background hash, as export_item starts it) of an unchanged file reads nothing."""
    size = 4_000_000
    names = ("same", "content", "size", "mtime", "inode")
    files = {name: tmp_path / f"{name}.bin" for name in names}
    for path in files.values():
        path.write_bytes(os.urandom(size))
    (tmp_path / "other.bin").write_bytes(os.urandom(size))
    import time

    time.sleep(hashing.RACY_MARGIN_NS / 1e9 + 0.2)  # their last change is no longer racy: digests are kept
    first = {name: hash_file(path) for name, path in files.items()}
    assert all(first[n].checksum == _sha(files[n]) for n in names)
    read = _bytes_read()
    assert hash_file(files["same"]).checksum == first["same"].checksum
    future = hashing.start_background(files["same"])
    assert future is not None and future.done() and future.result().checksum == first["same"].checksum
    assert hashing.take_background(files["same"]) is future
    assert _bytes_read() - read < size // 10  # neither read the file again

    stat = files["content"].stat()
    files["content"].write_bytes(os.urandom(size))  # same size, same mtime (restored): the ctime says it changed
    os.utime(files["content"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with open(files["size"], "ab") as handle:
        handle.write(b"!")
    os.utime(files["mtime"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same bytes
    replaced = files["inode"].stat()
    os.utime(tmp_path / "other.bin", ns=(replaced.st_atime_ns, replaced.st_mtime_ns))
    os.replace(tmp_path / "other.bin", files["inode"])  # same size and mtime, another inode
    for name in ("content", "size", "mtime", "inode"):
        assert hashing.cached_digest(files[name]) is None, name
        read = _bytes_read()
        assert hash_file(files[name]).checksum == _sha(files[name]), name
        assert _bytes_read() - read >= 2 * files[name].stat().st_size  # read again (hash_file, then _sha)
    assert hash_file(files["content"]).checksum != first["content"].checksum
    assert hash_file(files["mtime"]).checksum == first["mtime"].checksum


def test_a_just_written_file_is_not_kept(tmp_path: Path) -> None:
    """A file changed within the racy margin before its hash is hashed every time (no digest is kept)."""
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"x" * 1000)
    assert hash_file(path).checksum == _sha(path)
    assert hashing.cached_digest(path) is None
    future = hashing.start_background(path)
    assert future is not None and future.result().checksum == _sha(path)
    assert hashing.cached_digest(path) is None
