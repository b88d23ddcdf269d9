"""Hashing throughput of ``mlm_export.hashing.hash_file`` against ``hashlib.file_digest`` on the same file.

Run: ``.venv/bin/python benchmarks/bench_hashing.py [--size-mb 1024] [--repeats 3]``. Both are timed alternately,
best of ``repeats`` each, after one warm-up read so the file sits in the page cache for both. Target: ratio >= 0.95.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from mlm_export.hashing import hash_file


def make_file(path: Path, size_mb: int) -> None:
    """Write ``size_mb`` MiB of pseudo-random bytes (a 16 MiB random block repeated)."""
    block = os.urandom(16 * 1024 * 1024)
    remaining = size_mb * 1024 * 1024
    with open(path, "wb") as handle:
        while remaining > 0:
            chunk = block[: min(len(block), remaining)]
            handle.write(chunk)
            remaining -= len(chunk)


def baseline(path: Path) -> str:
    with open(path, "rb") as handle:
        return "1220" + hashlib.file_digest(handle, "sha256").hexdigest()


def measure(size_mb: int, repeats: int) -> dict[str, float]:
    """Return seconds (best of ``repeats``) for ours and the baseline, and the throughput ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.bin"
        make_file(path, size_mb)
        expected = baseline(path)  # warm-up: page cache
        ours_times, base_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            base = baseline(path)
            base_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            ours = hash_file(path, progress=False).checksum
            ours_times.append(time.perf_counter() - start)
            assert ours == base == expected
    ours_s, base_s = min(ours_times), min(base_times)
    return {"size_mb": size_mb, "ours_s": ours_s, "baseline_s": base_s, "ratio": base_s / ours_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.size_mb, args.repeats)
    mib = result["size_mb"]
    print(f"{'measure':<44}{'ours':>10}{'baseline':>10}{'ratio':>8}  target")
    print(
        f"{'hash_file vs hashlib.file_digest (' + str(mib) + ' MiB)':<44}"
        f"{mib / result['ours_s']:>7.0f}MB/s{mib / result['baseline_s']:>7.0f}MB/s{result['ratio']:>8.3f}  >= 0.95"
    )


if __name__ == "__main__":
    main()
