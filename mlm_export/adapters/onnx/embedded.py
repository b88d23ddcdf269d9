"""MLM metadata embedded in an ONNX model's ``metadata_props``: build, read and apply it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from mlm_export import embedded
from mlm_export.adapters import ExportOptions
from mlm_export.adapters.onnx.files import _save_proto
from mlm_export.description import (
    TASKS,
    Band,
    ModelDescription,
    classes_from,
)
from mlm_export.errors import (
    ConfigurationError,
    DescriptionError,
)

#: ``metadata_props`` key of the embedded MLM metadata.
METADATA_KEY = embedded.KEY

#: Keys of ``ExportOptions.metadata`` that ``embed_metadata`` writes.
EMBEDDED_KEYS = ("name", "architecture", "tasks", "bands", "classes", "description")


def _metadata_payload(options: ExportOptions, name: str, architecture: str | None) -> dict[str, Any]:
    """The JSON written to ``metadata_props["mlm"]`` from ``options.metadata`` (name falls back to ``name``).

    Raises:
        ConfigurationError: a task, band or class in ``options.metadata`` is invalid.
    """
    from mlm_export import __version__

    metadata = dict(options.metadata or {})
    payload: dict[str, Any] = {"name": str(metadata.get("name") or name), "generator": f"mlm-export {__version__}"}
    arch = metadata.get("architecture") or architecture
    if arch and arch != "unknown":
        payload["architecture"] = str(arch)
    if metadata.get("description"):
        payload["description"] = str(metadata["description"])
    if metadata.get("tasks") is not None:
        tasks = [str(t) for t in metadata["tasks"]]
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            raise ConfigurationError(f"tasks {bad} are not MLM tasks.", hint=f"Use among {list(TASKS)}.")
        payload["tasks"] = tasks
    if metadata.get("bands") is not None:
        bands = []
        for band in metadata["bands"]:
            if isinstance(band, str):
                bands.append({"name": band})
            elif isinstance(band, Mapping) and band.get("name"):
                bands.append({k: str(band[k]) for k in ("name", "description") if band.get(k)})
            else:
                raise ConfigurationError(f"band {band!r} needs a name.", hint="Give names or {'name': ...} dicts.")
        payload["bands"] = bands
    if metadata.get("classes") is not None:
        try:
            payload["classes"] = [c.to_dict() for c in classes_from(metadata["classes"])]
        except DescriptionError as exc:
            raise ConfigurationError(exc.message, hint="Check classes=.") from exc
    return payload


def _read_embedded(proto: onnx.ModelProto, where: str) -> dict[str, Any] | None:
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return embedded.decode(prop.value, where) or None
    return None


def _apply_embedded(described: ModelDescription, payload: Mapping[str, Any], where: Path) -> ModelDescription:
    """Apply embedded name, architecture, description, tasks, bands and classes; warn and skip what is invalid."""
    try:
        return _apply_embedded_values(described, payload)
    except (DescriptionError, TypeError, ValueError, KeyError) as exc:
        warnings.warn(
            f"'{where}': the embedded MLM metadata could not be applied ({exc}); it is ignored.",
            RuntimeWarning,
            stacklevel=3,
        )
        return described


def _apply_embedded_values(described: ModelDescription, payload: Mapping[str, Any]) -> ModelDescription:
    changes: dict[str, Any] = {}
    for key in ("name", "architecture", "description"):
        if isinstance(payload.get(key), str) and payload[key]:
            changes[key] = payload[key]
    tasks = payload.get("tasks")
    if isinstance(tasks, list):
        changes["tasks"] = tuple(t for t in tasks if t in TASKS)
    inputs = list(described.inputs)
    bands = payload.get("bands", payload.get("band_definitions"))  # the latter: ModelDescription.to_dict()
    if isinstance(bands, list) and bands:
        definitions = tuple(
            Band(name=str(b["name"]), description=b.get("description")) if isinstance(b, Mapping) else Band(name=str(b))
            for b in bands
        )
        names = tuple(b.name for b in definitions)
        for index, spec in enumerate(inputs):
            axis = next((spec.dim_order.index(d) for d in ("channel", "bands") if d in spec.dim_order), None)
            if axis is not None and spec.shape[axis] in (-1, len(names)):
                order = tuple("bands" if a == axis else d for a, d in enumerate(spec.dim_order))
                inputs[index] = replace(spec, bands=names, dim_order=order)
                changes["band_definitions"] = definitions
                break
        else:
            raise ValueError(f"no input has {len(names)} channels for bands {list(names)}")
    outputs = list(described.outputs)
    classes = payload.get("classes")
    if classes is None and isinstance(payload.get("outputs"), list):  # ModelDescription.to_dict()
        classes = next((o["classes"] for o in payload["outputs"] if isinstance(o, Mapping) and o.get("classes")), None)
    if isinstance(classes, list) and classes:
        infos = classes_from(classes)
        for index, spec in enumerate(outputs):
            if "class" in spec.dim_order and spec.shape[spec.dim_order.index("class")] in (-1, len(infos)):
                outputs[index] = replace(spec, classes=infos)
                break
        else:
            raise ValueError(f"no output has {len(infos)} classes")
    changes["inputs"] = tuple(inputs)
    changes["outputs"] = tuple(outputs)
    return described.replace(**changes)


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
