"""mlm-export: measure a trained model and describe it as a STAC Item with the MLM extension.

The public names are listed once, in ``_LAZY`` (name -> module that defines it); ``__all__`` is made from it and
each is imported on first use, so ``import mlm_export`` imports neither torch nor onnx. The ``TYPE_CHECKING``
imports repeat ``_LAZY`` for type checkers and IDEs; ``tests/test_public_api.py`` checks that they agree and that
every name imports and is documented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlm_export.errors import MLMExportError as MLMExportError

__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers: "X as X" marks a re-export
    from mlm_export.api import apply_overrides as apply_overrides
    from mlm_export.api import export_item as export_item
    from mlm_export.api import inspect_model as inspect_model
    from mlm_export.card import render_card as render_card
    from mlm_export.card import write_card as write_card
    from mlm_export.description import ModelDescription as ModelDescription
    from mlm_export.loading import check_item as check_item
    from mlm_export.loading import load_model as load_model
    from mlm_export.prediction import predict as predict
    from mlm_export.stac.builder import build_item as build_item
    from mlm_export.stac.collection import build_catalog as build_catalog
    from mlm_export.stac.publish import publish as publish
    from mlm_export.stac.search import search as search
    from mlm_export.stac.search import search_catalog as search_catalog
    from mlm_export.stac.validate import ValidationReport as ValidationReport
    from mlm_export.stac.validate import validate_item as validate_item
    from mlm_export.stac.writer import save_item as save_item

#: The public names imported on first use -> the module that defines each (the one list of the public API).
_LAZY = {
    "export_item": "mlm_export.api",
    "apply_overrides": "mlm_export.api",
    "inspect_model": "mlm_export.api",
    "validate_item": "mlm_export.stac.validate",
    "load_model": "mlm_export.loading",
    "check_item": "mlm_export.loading",
    "predict": "mlm_export.prediction",
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

__all__ = sorted(["MLMExportError", "__version__", *_LAZY])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlm_export' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
