"""MLM metadata embedded in an ONNX model's ``metadata_props``: write and read it (:mod:`mlm_export.embedded`).

The adapter returns what it reads in ``ModelDescription.embedded``, as the torch adapter does; ``export_item``
applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from mlm_export import embedded
from mlm_export.adapters import ExportOptions
from mlm_export.adapters.onnx.files import _save_proto

#: ``metadata_props`` key of the embedded MLM metadata.
METADATA_KEY = embedded.KEY


def _metadata_payload(options: ExportOptions, name: str, architecture: str | None) -> dict[str, Any]:
    """The object written to ``metadata_props["mlm"]``: :func:`mlm_export.embedded.payload` of the options."""
    return embedded.payload(options.artifact.metadata, name=name, architecture=architecture)


def _read_embedded(proto: onnx.ModelProto, where: str) -> dict[str, Any] | None:
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return embedded.decode(prop.value, where) or None
    return None


def _set_metadata(proto: onnx.ModelProto, payload: Mapping[str, Any]) -> None:
    """Replace ``metadata_props["mlm"]`` of ``proto`` (a copy) by ``payload`` as JSON."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in kept:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, embedded.encode(payload)


def _embed_in_file(path: Path, payload: Mapping[str, Any]) -> None:
    """Rewrite the graph file ``path`` (ours, in staging) with ``payload`` embedded; external data is untouched."""
    proto = onnx.load(str(path), load_external_data=False)
    _set_metadata(proto, payload)
    _save_proto(proto, path)
