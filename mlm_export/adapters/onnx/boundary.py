"""Error translation for the ONNX adapter: known onnx/onnxruntime errors become typed mlm-export errors or notes."""

from __future__ import annotations

import warnings
from typing import Any


def _degrade(notes: list[str], message: str) -> None:
    """Record a degraded-but-valid result in the notes and warn."""
    notes.append(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _ort_errors(state: Any) -> tuple[type[BaseException], ...]:
    """The exception classes of onnxruntime (they derive from Exception directly)."""
    found = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return (*found, RuntimeError, OSError, ValueError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."
