"""Thin layers over :func:`mlm_export.export_item` for training frameworks.

* :mod:`mlm_export.integrations.torchgeo`: :func:`~mlm_export.integrations.torchgeo.export_torchgeo` and the
  helpers that turn torchgeo weights, trainers and datamodules into override values.
* :mod:`mlm_export.integrations.lightning`: :class:`~mlm_export.integrations.lightning.MLMExportCallback`.

Importing this package imports no framework: each submodule imports its framework when it is imported itself.
The helpers below are shared by both submodules and use the standard library only.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Mapping
from typing import Any

from mlm_export.description import hyperparameter_key

#: Tensors/arrays with more elements than this are summarised by their shape instead of listed.
MAX_LISTED_ELEMENTS = 64


def json_safe(value: Any) -> Any:  # one return per kind of value
    """Return ``value`` as plain JSON data (numbers, strings, booleans, None, lists, dicts).

    Tensors and arrays become lists (or a ``"tensor of shape [...]"`` text when large), enums their member name
    (a torchgeo ``WeightsEnum`` member its full name, e.g. ``ResNet18_Weights.SENTINEL2_ALL_MOCO``), classes and
    functions their qualified name, paths their file name (never an absolute local path) and anything else its
    class name. Non-finite floats become strings because JSON has no NaN.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return str(value) if type(value).__name__.endswith("_Weights") else value.name
    if isinstance(value, os.PathLike):
        return os.path.basename(os.fspath(value))
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    numel = getattr(value, "numel", None) or getattr(value, "size", None)
    if hasattr(value, "tolist") and hasattr(value, "shape"):
        count = numel() if callable(numel) else numel
        if isinstance(count, int) and count <= MAX_LISTED_ELEMENTS:
            return json_safe(value.tolist())
        return f"tensor of shape {list(value.shape)}"
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return f"{type(value).__module__}.{type(value).__qualname__}"


def hyperparameters_from(values: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """Return JSON-safe ``mlm:hyperparameters`` from ``values`` (e.g. a LightningModule's ``hparams``).

    Keys are made to match ``^[0-9a-zA-Z_.-]+$``; nested mappings are flattened with ``.`` (``optimizer.lr``);
    ``None`` values are left out.
    """
    result: dict[str, Any] = {}
    for key, value in values.items():
        name = hyperparameter_key(f"{prefix}{key}")
        if value is None:
            continue
        if isinstance(value, Mapping) and value:
            result.update(hyperparameters_from(value, prefix=f"{name}."))
            continue
        result[name] = json_safe(value)
    return result


def merge_export_options(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``export_item`` keyword arguments, later layers winning.

    ``hyperparameters`` are merged key by key and ``links`` are concatenated; an ``example_input`` or
    ``input_shape`` in a later layer replaces both values of the earlier layers.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key == "hyperparameters":
                merged[key] = {**merged.get(key, {}), **value}
            elif key == "links":
                merged[key] = [*merged.get(key, []), *value]
            elif key in ("example_input", "input_shape"):
                merged.pop("example_input", None)
                merged.pop("input_shape", None)
                merged[key] = value
            else:
                merged[key] = value
    return merged


__all__ = ["hyperparameter_key", "hyperparameters_from", "json_safe", "merge_export_options"]
