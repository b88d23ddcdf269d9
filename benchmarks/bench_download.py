"""Verified download (``fetch_artifact``) of a large artifact from a loopback HTTP server vs hashing the same file.

Run: ``.venv/bin/python benchmarks/bench_download.py [--size-mb 1024] [--repeats 3]``. The server
(``tests/loopback.py``, a threaded ``http.server`` sending with ``sendfile``) runs in a sibling process. Ours:
``fetch_artifact`` into an empty cache (receiving overlapped with hashing and writing, then the atomic rename).
Baseline: ``hashlib.file_digest`` of the same file, page cache warm. Best of ``repeats`` each. Target: ratio <= 1.5.
Also reported (info): download-then-hash, the naive way (httpx to a file, then hash it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_hashing
import httpx

from mlm_export.transfer import fetch_artifact

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _naive(url: str, target: Path) -> str:
    with httpx.stream("GET", url) as response, open(target, "wb") as handle:
        for chunk in response.iter_bytes():
            handle.write(chunk)
    return bench_hashing.baseline(target)


def measure(size_mb: int, repeats: int) -> dict[str, float]:
    """Seconds (best of ``repeats``) for the verified download, the hash baseline and the naive download."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "site").mkdir()
        path = root / "site" / "weights.bin"
        bench_hashing.make_file(path, size_mb)
        checksum = bench_hashing.baseline(path)
        server = subprocess.Popen([sys.executable, str(TESTS / "loopback.py"), str(root / "site")],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{int(server.stdout.readline())}/weights.bin"
            ours, base, naive = [], [], []
            for _ in range(repeats):
                start = time.perf_counter()
                with open(path, "rb") as handle:
                    assert "1220" + hashlib.file_digest(handle, "sha256").hexdigest() == checksum
                base.append(time.perf_counter() - start)
                cache = root / "cache"
                start = time.perf_counter()
                fetch_artifact(url, size=path.stat().st_size, checksum=checksum, cache_dir=cache, progress=False)
                ours.append(time.perf_counter() - start)
                shutil.rmtree(cache)
                start = time.perf_counter()
                assert _naive(url, root / "naive.bin") == checksum
                naive.append(time.perf_counter() - start)
                (root / "naive.bin").unlink()
        finally:
            server.terminate()
            server.wait(timeout=10)
    ours_s, base_s, naive_s = min(ours), min(base), min(naive)
    # the overlap needs a free core: on a busy machine the ratio tends to the serial sum (about 2.3)
    return {"size_mb": size_mb, "ours_s": ours_s, "baseline_s": base_s, "naive_s": naive_s,
            "ratio": ours_s / base_s, "naive_ratio": naive_s / base_s, "load": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = measure(args.size_mb, args.repeats)
    print(f"fetch_artifact {r['ours_s']:.2f} s, file_digest {r['baseline_s']:.2f} s, ratio {r['ratio']:.3f} "
          f"(target <= 1.5); naive download-then-hash {r['naive_s']:.2f} s, ratio {r['naive_ratio']:.3f}; "
          f"load average {r['load']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
