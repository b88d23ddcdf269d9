"""``mlm-export ... | head -1`` ends quietly, like other Unix tools (no BrokenPipeError traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from factories import item_dict

REPO = Path(__file__).resolve().parents[2]


def test_validate_json_into_head_closes_quietly(tmp_path: Path) -> None:
    item = tmp_path / "item.json"
    item.write_text(json.dumps(item_dict(tmp_path)))
    files = " ".join([str(item)] * 400)  # far more output than a pipe buffer holds
    command = f"{sys.executable} -m mlm_export validate --no-check-files --json {files} | head -1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300,
    )  # fmt: skip
    assert result.stdout == "[\n"
    assert "BrokenPipeError" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 141  # 128 + SIGPIPE, what `yes | head -1` reports under pipefail
