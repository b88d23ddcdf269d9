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


def test_the_cli_process_skips_teardown_but_runs_threads_atexit_and_flushes(tmp_path: Path) -> None:
    # The process ends by os._exit (no teardown of torch's modules), after what the interpreter's exit runs first:
    # non-daemon threads joined, atexit handlers, stdout/stderr flushed; the exit code is the CLI's.
    item = tmp_path / "item.json"
    item.write_text(json.dumps(item_dict(tmp_path)))
    code = (
        "import atexit, sys, threading, time\n"
        "done = []\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), done.append(1))).start()\n"
        "atexit.register(lambda: print('atexit ran, thread joined:', done == [1], file=sys.stderr))\n"
        "class Module:\n"
        "    def __del__(self):\n"
        "        print('torn down', file=sys.stderr)\n"
        "module = Module()  # deleted when the interpreter tears __main__ down\n"
        "from mlm_export.cli import console\n"
        "console()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv, exit_code in ((["validate", "--no-check-files", str(item)], 0), (["validate", "missing.json"], 1)):
        result = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
        )
        assert result.returncode == exit_code, result.stderr
        assert "atexit ran, thread joined: True" in result.stderr
        assert "torn down" not in result.stderr
        assert (str(item) in result.stdout) == (exit_code == 0), result.stdout  # buffered stdout was written
