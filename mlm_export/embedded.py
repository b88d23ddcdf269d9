"""Metadata embedded in an artifact: one key, one encoding, one decoder for safetensors, ``.pt2`` and ONNX.

``export_item(..., embed_metadata=True)`` writes the caller's descriptive values (JSON object, keys sorted) under
the key :data:`KEY`:

* safetensors: ``__metadata__["mlm"]`` (and ``"mlm.description"``, the full measured description);
* ``.pt2``: the extra file ``mlm.json`` (:data:`PT2_EXTRA_FILE`);
* ONNX: ``metadata_props["mlm"]``.

Reading an artifact back decodes that object with :func:`decode`; invalid metadata is ignored with a warning,
never an error, since it only supplies defaults.
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
