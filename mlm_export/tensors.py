"""Tensor rules both adapters share: element type -> MLM data type, layouts and dim_order by rank, output tasks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from mlm_export.description import DATA_TYPES

#: Layout of an input by rank: tabular [B, C], sequence [B, T, C], image [B, C, H, W], image-time [B, T, C, H, W].
LAYOUT_BY_RANK: dict[int, str] = {2: "tabular", 3: "sequence", 4: "image", 5: "image-time"}
LAYOUTS: dict[str, tuple[str, ...]] = {
    "tokens": ("batch", "token"),
    "tabular": ("batch", "channel"),
    "sequence": ("batch", "time", "channel"),
    "image": ("batch", "channel", "height", "width"),
    "image-time": ("batch", "time", "channel", "height", "width"),
}

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


class TensorLike(Protocol):
    """Anything with a shape and an MLM data type (MeasuredTensor, OutputSpec)."""

    shape: tuple[int, ...]
    data_type: str


_GENERIC_NAMES = ("batch", "channel", "height", "width", "depth", "x", "y", "z")


def generic_dim_order(rank: int) -> tuple[str, ...]:
    """Names for a tensor whose layout is unknown: batch first, then generic axis names."""
    if rank <= len(_GENERIC_NAMES):
        return _GENERIC_NAMES[:rank]
    letters = "abcdefghijklmnopqrstuvwxyz"
    return _GENERIC_NAMES + tuple(f"axis-{letters[i]}" for i in range(rank - len(_GENERIC_NAMES)))


#: Output names that say "a feature vector" (``embedding``, ``features``, ``image_feats``, ``last_hidden_state``...).
_EMBEDDING_NAME = re.compile(
    r"(?:^|[^a-z])(?:embed|embeds|embedding|embeddings|features?|feats?|latents?|representations?|pooled|pooler"
    r"|hidden|encodings?|descriptors?)(?:$|[^a-z])",
    re.IGNORECASE,
)


def is_embedding_name(name: str) -> bool:
    """Whether an output's name says it is an embedding (a feature vector), not class scores."""
    return bool(_EMBEDDING_NAME.search(name))


def output_dim_order(
    shape: Sequence[int],
    input_layouts: Sequence[str | None],
    input_dim_orders: Sequence[Sequence[str]] = (),
    *,
    embedding: bool = False,
) -> tuple[str, ...]:
    """dim_order of an output: [batch, class], [batch, class, height, width], [batch, time, channel]...

    An output of the same rank as an input whose axes were named after its first layer (Conv1d [batch, channel,
    time], Conv3d [batch, channel, time, height, width], a time-major RNN [time, batch, channel]) keeps that
    input's axis order, with the channel axis of a spatial map named ``class``. An ``embedding`` output (named
    like one, or of a model without a head) has an ``embedding`` axis (MLM's suggested name) instead of ``class``.
    """
    order = _output_dim_order(shape, input_layouts, input_dim_orders)
    return tuple("embedding" if d == "class" else d for d in order) if embedding else order


def _output_dim_order(
    shape: Sequence[int], input_layouts: Sequence[str | None], input_dim_orders: Sequence[Sequence[str]]
) -> tuple[str, ...]:
    rank = len(shape)
    for order in input_dim_orders:
        default = LAYOUTS.get(LAYOUT_BY_RANK.get(len(order), ""))
        # A token axis is kept only where the output follows the number of tokens (a per-token output): a pooled
        # [batch, N] output of a token model is a class (or feature) axis.
        per_token = "token" not in order or shape[list(order).index("token")] == -1
        if len(order) == rank and tuple(order) != default and "bands" not in order and per_token:
            if "height" in order:
                return tuple("class" if d == "channel" else d for d in order)
            return tuple(order)
    image_like = any(layout in ("image", "image-time") for layout in input_layouts)
    if rank == 1:
        return ("batch",)
    if rank == 2:
        return ("batch", "class")
    if rank == 3:
        return ("batch", "height", "width") if image_like else ("batch", "time", "channel")
    if rank == 4:
        return ("batch", "class", "height", "width")
    if rank == 5:
        return ("batch", "time", "class", "height", "width")
    return generic_dim_order(rank)


def infer_output_task(out: TensorLike) -> str | None:
    """The task of one output (by its shape), or None for non-tensor outputs and embeddings."""
    # The dtype does not change what an output means: a bfloat16 ("other") map is as segmentation as a float32 one.
    if getattr(out, "kind", "tensor") != "tensor":
        return None
    shape = out.shape
    order = tuple(getattr(out, "dim_order", ()) or ())
    if "embedding" in order:
        return None  # a feature vector: no task follows from its shape
    if "class" in order and "height" in order:
        return "semantic-segmentation" if shape[order.index("class")] != 1 else "regression"
    if len(shape) in (4, 5) and shape[-3] != 1:
        return "semantic-segmentation"
    if len(shape) == 2 and shape[1] != 1 and (not order or "class" in order):
        return "classification"
    return "regression"
