"""Leftover ``.part`` files: a download killed with SIGKILL leaves one, the next download removes it, and the
``.part`` of a download still running in another process is kept (its writer holds the file's lock)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile_http import HostileServer, held, static

from mlm_export.artifact_cache import part_file, remove_leftovers
from mlm_export.transfer import fetch_artifact

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])

DATA = os.urandom(256 * 1024)
CHECKSUM = "1220" + hashlib.sha256(DATA).hexdigest()
OTHER = b"another artifact"
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        running.routes["/held.bin"] = held(DATA, 64 * 1024)  # 64 KiB, then nothing until released
        running.routes["/other.bin"] = static(OTHER)
        yield running


def parts(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.part")) if directory.exists() else []


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_download(url: str, cache: Path) -> subprocess.Popen[str]:
    code = (
        "import sys; from mlm_export.transfer import fetch_artifact; url, size, checksum, cache = sys.argv[1:]; "
        "print(fetch_artifact(url, size=int(size), checksum=checksum, cache_dir=cache))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code, url, str(len(DATA)), CHECKSUM, str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


def test_a_killed_download_is_cleaned_up_and_a_running_one_is_kept(server: HostileServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    killed = start_download(f"{server.url}/held.bin", cache)
    try:
        wait_for(lambda: parts(cache) and server.sent["/held.bin"] >= 64 * 1024, "the first download under way")
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=20)
    [leftover] = parts(cache)
    running = start_download(f"{server.url}/held.bin", cache)  # the next run: it removes the leftover first
    try:
        wait_for(lambda: any(p != leftover for p in parts(cache)) and server.sent["/held.bin"] >= 128 * 1024,
                 "the second download under way")  # fmt: skip
        [live] = [p for p in parts(cache) if p != leftover]
        assert not leftover.exists()
        # one more run while the second download is under way: a download of anything into the same cache
        other = fetch_artifact(f"{server.url}/other.bin", size=len(OTHER),
                               checksum="1220" + hashlib.sha256(OTHER).hexdigest(), cache_dir=cache)  # fmt: skip
        assert other.read_bytes() == OTHER
        assert parts(cache) == [live]  # the running download's file is kept
        server.release.set()
        out, err = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate(timeout=20)
    assert running.returncode == 0, err
    assert Path(out.strip()).read_bytes() == DATA
    assert parts(cache) == []


def test_only_unlocked_files_of_the_pattern_are_removed(tmp_path: Path) -> None:
    foreign = [tmp_path / ".notes.part", tmp_path / "model.part", tmp_path / ".0123456789abcdef.x.part"]
    for path in foreign:
        path.write_bytes(b"not ours")
    with part_file(tmp_path, ".0123456789abcdef.") as (stream, temp):
        stream.write(b"being written")
        assert remove_leftovers(tmp_path, ".0123456789abcdef.") == []  # locked by this writer
        assert temp.exists()
    assert not temp.exists()  # never published: removed on the way out
    assert all(path.exists() for path in foreign)
