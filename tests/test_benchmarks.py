"""The benchmark command runs end to end (tiny sizes: the figures themselves are only meaningful at 1 GiB)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.slow
def test_benchmark_table_has_every_row() -> None:
    result = subprocess.run(
        [sys.executable, str(RUN), "--size-mb", "8", "--items", "20"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1 = a target missed, expected at 8 MiB
    for words in ("hash_file vs hashlib.file_digest", "export_item vs sha256+forward", "peak RSS",
                  "safetensors header-only", "ONNX describe_static", "mlm-export validate",
                  "verified download", "render_card HTML", "validate_item, 10000 classes",
                  "Items to local stac-fastapi-pgstac vs bare httpx", "embedded search over 20 Items",
                  "mlm-export export (process)", "all probes, in real forwards",
                  "predicted vs measured dry-run peak",
                  "batch-size search", "sharded describe", "dry-run peak RSS vs", "predict peak RSS",
                  "predict on LocalCluster", "predict graph over a 40000^2 raster",
                  "API search rare-bands"):  # fmt: skip
        assert words in result.stdout, result.stdout
    assert "embedded search, rare query (20 hits), 1000 vs 100 Items" in result.stdout, result.stdout
