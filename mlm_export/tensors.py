"""The two tensor rules both adapters share: element type -> MLM data type, and rank -> default dim_order."""

from __future__ import annotations

from mlm_export.description import DATA_TYPES
from mlm_export.probing import LAYOUT_BY_RANK, LAYOUTS, generic_dim_order

#: Element type names (numpy/torch/ONNX spelling) whose MLM name differs; the others are MLM's own or "other".
_RENAMED: dict[str, str] = {"complex64": "cfloat32", "complex128": "cfloat64", "object": "string", "str": "string"}
#: MLM data type -> element type name (inputs built from an Item; "other" is built as float32).
ELEMENT_OF: dict[str, str] = {
    **{name: name for name in DATA_TYPES if name not in ("other", "cint16", "cint32", "cfloat32", "cfloat64")},
    "cfloat32": "complex64",
    "cfloat64": "complex128",
}


def mlm_data_type(element: str) -> str:
    """MLM data type of an element type name (``"float32"``, ``"torch.complex64"``...); ``"other"`` if MLM lacks it.

    ``bool``, ``bfloat16``, ``float8*``, quantized types and strings are ``"other"``.
    """
    name = _RENAMED.get(element.removeprefix("torch."), element.removeprefix("torch."))
    return name if name in DATA_TYPES and name not in ("cint16", "cint32") else "other"


def layout_dim_order(rank: int) -> tuple[str, ...] | None:
    """The dim_order of the layout probing assumes for ``rank`` (None when it has none for that rank)."""
    layout = LAYOUT_BY_RANK.get(rank)
    return LAYOUTS[layout] if layout is not None else None


def default_dim_order(rank: int) -> tuple[str, ...]:
    """The dim_order of an input nothing else names: the layout's for ``rank``, else batch plus generic names."""
    return layout_dim_order(rank) or generic_dim_order(rank)
