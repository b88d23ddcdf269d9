"""Metadata embedded in an artifact: one key, one encoding, one decoder for safetensors, ``.pt2`` and ONNX.

``export_item(..., embed_metadata=True)`` writes the caller's descriptive values (JSON object, keys sorted) under
the key :data:`KEY`:

* safetensors: ``__metadata__["mlm"]`` (and ``"mlm.description"``, the full measured description);
* ``.pt2``: the extra file ``mlm.json`` (:data:`PT2_EXTRA_FILE`);
* ONNX: ``metadata_props["mlm"]``.

Both adapters write the object :func:`payload` builds (the caller's values, the name and architecture, the
generator) and read it back with :func:`decode` and :func:`caller_values` into ``ModelDescription.embedded``;
neither applies it: ``export_item`` and ``inspect_model`` use it where the caller passed nothing
(:meth:`mlm_export.overrides.Overrides.apply_with_embedded`). Invalid metadata is ignored with a warning, never an
error, since it only supplies defaults.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

#: Key of the embedded metadata in every format.
KEY = "mlm"
#: Name of the extra file holding it in a ``.pt2`` archive.
PT2_EXTRA_FILE = f"{KEY}.json"
#: safetensors metadata key of the full measured description.
DESCRIPTION_KEY = f"{KEY}.description"
#: The caller's descriptive values an artifact embeds and gives back as defaults (``export_item``'s argument names).
FIELDS = ("tasks", "bands", "classes", "name", "description", "value_scaling", "resize_type", "pretrained",
          "pretrained_source", "license")  # fmt: skip


def payload(metadata: Mapping[str, Any], *, name: str, architecture: str | None) -> dict[str, Any]:
    """The object embedded in an artifact, the same for every format.

    It holds the caller's values (JSON-safe, see ``Overrides.embeddable``), the model's name (the caller's, else
    ``name``), its architecture when known and the generator.
    """
    from mlm_export import __version__

    written = {k: v for k, v in metadata.items() if k in FIELDS and v is not None}
    written["name"] = str(metadata.get("name") or name)
    if architecture and architecture != "unknown":
        written["architecture"] = str(architecture)
    written["generator"] = f"mlm-export {__version__}"
    return written


def caller_values(embedded: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`FIELDS` of a decoded object, which may also be a full ``ModelDescription.to_dict()``.

    The description form names bands ``band_definitions`` and keeps classes in its outputs.
    """
    values = {k: embedded[k] for k in FIELDS if embedded.get(k) is not None}
    if "bands" not in values and isinstance(embedded.get("band_definitions"), list) and embedded["band_definitions"]:
        values["bands"] = embedded["band_definitions"]
    outputs = embedded.get("outputs")
    if "classes" not in values and isinstance(outputs, list):
        classes = next((o["classes"] for o in outputs if isinstance(o, Mapping) and o.get("classes")), None)
        if classes:
            values["classes"] = classes
    if not values.get("tasks"):  # ``()`` in a description means "not said"
        values.pop("tasks", None)
    return values


def encode(payload: Mapping[str, Any]) -> str:
    """The JSON text stored in the artifact (sorted keys, so the same values give the same bytes)."""
    return json.dumps(dict(payload), sort_keys=True)


def decode(text: str | bytes | None, where: object) -> dict[str, Any]:
    """The embedded JSON object (empty when absent); invalid metadata is ignored with a ``RuntimeWarning``.

    Args:
        text: the stored text, or None/empty when the artifact has none.
        where: the file or object it was read from (named in the warning).
    """
    if not text:
        return {}
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        warnings.warn(f"'{where}': embedded MLM metadata is not JSON ({exc}); it is ignored.", RuntimeWarning,
                      stacklevel=3)  # fmt: skip
        return {}
    if not isinstance(payload, dict):
        warnings.warn(f"'{where}': embedded MLM metadata is not a JSON object; it is ignored.", RuntimeWarning,
                      stacklevel=3)  # fmt: skip
        return {}
    return payload
