"""``processing:software`` (Processing extension v1.1.0): the software that measured the Item.

Records mlm-export and the framework packages the adapter used (``torch`` for PyTorch, ``onnx`` and ``onnxruntime``
for ONNX) with their installed versions. No processing level is claimed: a model Item is not a data product.

.. versionadded:: 0.2
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

#: The Processing extension version MLM's examples use.
PROCESSING_SCHEMA_URI = "https://stac-extensions.github.io/processing/v1.1.0/schema.json"
#: Distributions whose versions are recorded, per ``mlm:framework``.
FRAMEWORK_PACKAGES: dict[str, tuple[str, ...]] = {
    "pytorch": ("torch",),
    "onnx": ("onnx", "onnxruntime"),
}


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def processing_software(framework: str | None) -> dict[str, str]:
    """``{"mlm-export": version, "torch": version, ...}`` for a model of ``framework`` (installed packages only)."""
    from mlm_export import __version__

    software = {"mlm-export": __version__}
    for name in FRAMEWORK_PACKAGES.get((framework or "").lower(), ()):
        version = _installed(name)
        if version is not None:
            software[name] = version
    return software


def apply_software(item: Any, framework: str | None) -> None:
    """Set ``processing:software`` on a ``pystac.Item`` and declare the Processing extension."""
    item.properties["processing:software"] = processing_software(framework)
    if PROCESSING_SCHEMA_URI not in item.stac_extensions:
        item.stac_extensions.append(PROCESSING_SCHEMA_URI)


__all__ = ["FRAMEWORK_PACKAGES", "PROCESSING_SCHEMA_URI", "apply_software", "processing_software"]
