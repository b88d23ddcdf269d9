"""mlm-export: measure a trained model and describe it as a STAC Item with the MLM extension."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlm_export.errors import MLMExportError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mlm_export.api import export_item, inspect_model
    from mlm_export.card import render_card, write_card
    from mlm_export.loading import check_item, load_model
    from mlm_export.stac.collection import build_catalog
    from mlm_export.stac.publish import publish
    from mlm_export.stac.search import search, search_catalog
    from mlm_export.stac.validate import ValidationReport, validate_item
    from mlm_export.stac.writer import save_item

_LAZY = {
    "export_item": "mlm_export.api",
    "apply_overrides": "mlm_export.api",
    "inspect_model": "mlm_export.api",
    "validate_item": "mlm_export.stac.validate",
    "load_model": "mlm_export.loading",
    "check_item": "mlm_export.loading",
    "build_catalog": "mlm_export.stac.collection",
    "search": "mlm_export.stac.search",
    "search_catalog": "mlm_export.stac.search",
    "publish": "mlm_export.stac.publish",
    "ValidationReport": "mlm_export.stac.validate",
    "save_item": "mlm_export.stac.writer",
    "build_item": "mlm_export.stac.builder",
    "ModelDescription": "mlm_export.description",
    "render_card": "mlm_export.card",
    "write_card": "mlm_export.card",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlm_export' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "MLMExportError",
    "ValidationReport",
    "__version__",
    "build_catalog",
    "check_item",
    "export_item",
    "inspect_model",
    "load_model",
    "publish",
    "render_card",
    "save_item",
    "search",
    "search_catalog",
    "validate_item",
    "write_card",
]
