"""Error translation for the ONNX adapter: known onnx/onnxruntime errors become typed mlm-export errors or notes.

What the libraries raise for a corrupt ``.onnx`` file (found with the corrupt-file corpus and by mutating real
models, ``tests/adapters/onnx/test_onnx_boundary.py``): ``onnx.load`` raises ``DecodeError`` for a truncated or
random file and ``OSError`` when unreadable; ``onnx.checker.check_model`` raises ``ValidationError``, and
``UnicodeDecodeError`` for a name that is not UTF-8; onnxruntime raises its own classes (:func:`_ort_errors`).
Protobuf does *not* raise for a ``string`` field that is not UTF-8 where the checker does not look (the graph's
name, ``metadata_props``, ``doc_string``): it hands back ``bytes``, which :func:`_undecodable_field` finds before
any of our code treats them as text. Everything else propagates: it is a bug, not a corrupt file.
"""

from __future__ import annotations

import warnings
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from mlm_export.errors import first_line


def _degrade(notes: list[str], message: str) -> None:
    """Record a degraded-but-valid result in the notes and warn."""
    notes.append(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _ort_errors(state: Any) -> tuple[type[BaseException], ...]:
    """The exception classes of onnxruntime (they derive from Exception directly)."""
    found = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return (*found, RuntimeError, OSError, ValueError)


def _first_line(exc: BaseException) -> str:
    return first_line(exc, limit=300)


def _undecodable_field(message: Message, where: str = "") -> str | None:
    """The dotted path of the first ``string`` field of ``message`` that protobuf returned as bytes (not UTF-8).

    Tensor payloads are ``bytes`` fields and are not looked at; only text fields and nested messages are.
    """
    for descriptor, value in message.ListFields():
        if descriptor.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE):
            continue
        name = f"{where}.{descriptor.name}" if where else descriptor.name
        items = [value] if isinstance(value, (str, bytes, Message)) else list(value)  # a repeated field
        if any(isinstance(item, bytes) for item in items):
            return name
        for item in items:
            found = _undecodable_field(item, name) if isinstance(item, Message) else None
            if found is not None:
                return found
    return None
