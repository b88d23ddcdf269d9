"""Run a command on a real pseudo-terminal (what a person at a terminal sees: bars, spinners, rich tables)."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_on_terminal(
    command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = 240
) -> tuple[int, str]:
    """Run ``command`` with stdin/stdout/stderr on a new pseudo-terminal; return (exit code, everything it wrote)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(list(command), stdin=terminal, stdout=terminal, stderr=terminal, cwd=cwd, env=dict(env))
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the terminal closed when the process ended
            break
        if not data:
            break
        chunks.append(data)
    code = process.wait(timeout=timeout)
    os.close(controller)
    return code, b"".join(chunks).decode(errors="replace")
