"""``mlm-export form`` in a real process: it prints the URL with its token, serves on 127.0.0.1 only, refuses a
request without the token, and on Ctrl-C (or SIGTERM) stops and removes its temporary files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGINT, 0), (signal.SIGTERM, 143)])
def test_form_prints_its_url_serves_and_cleans_up_when_stopped(tmp_path: Path, stop: int, status: int) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlm_export", "form", "--no-browser", "--port", "0", "--max-upload", "1MiB"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"mlm-export form: open (http://127\.0\.0\.1:(\d+)/\?token=([\w-]{40,}))\n", line)
        assert match, line
        url, port = match[1], int(match[2])
        deadline = time.monotonic() + 30
        while True:  # the server is listening once the URL is printed; allow for a slow start of uvicorn
            try:
                page = httpx.get(url, timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert page.status_code == 200 and "Upload cap" in page.text and 'content="1048576"' in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 403
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("mlm-export-form-")] != []
        process.send_signal(stop)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == status, err
    assert "temporary files removed" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("mlm-export-form-")] == []


def test_a_taken_port_is_a_reported_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", "mlm_export", "form", "--no-browser", "--port", str(port)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1 and f"Cannot listen on 127.0.0.1:{port}" in done.stderr
    assert list(tmp_path.iterdir()) == []  # the session's directory was removed again


def test_without_no_browser_the_url_is_opened_in_the_browser(tmp_path: Path) -> None:
    """``webbrowser`` runs $BROWSER: here a script that writes down the URL it was given."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT), "BROWSER": f"{browser} %s"}
    env.pop("DISPLAY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlm_export", "form"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        url = process.stdout.readline().removeprefix("mlm-export form: open ").strip()
        deadline = time.monotonic() + 30
        while not (opened.exists() and opened.read_text()):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        assert opened.read_text() == url and "?token=" in url
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
