"""``resize_type``: windows of the data resized to the model's input, and dense results resized back.

MLM's ``resize_type`` names how the input is brought to the model's shape (OpenCV's flags) without saying when.
``predict`` applies it when a window of the data grid (``window_size``, ``--window-size``: e.g. the model was
trained at another resolution, or takes a fixed 224 x 224 input for a 448 px footprint) differs from the model's
input (its fixed height/width, or the tile size of a dynamic one). Then, per window:

1. the input's channels (band ``expression``s done), padded with nodata where the window reaches past the scene;
2. resized to the model's input with ``torch.nn.functional.interpolate`` (``align_corners=False``, no antialias):
   ``interpolation-nearest`` -> ``nearest``, ``interpolation-linear`` -> ``bilinear``, ``interpolation-cubic`` ->
   ``bicubic``, ``interpolation-area`` -> ``area``; the valid mask by ``nearest``;
3. ``value_scaling``, then pixels whose resized mask is nodata set to 0 (the order of :mod:`.preprocess`).

Nodata values take part in the interpolation of their neighbours (nothing is in-painted). A dense result
(``k`` times the model's input) is resized back to ``k`` times the window with the same mode before it is stitched;
per-tile results are kept as they are. ``crop``, ``pad`` and ``null`` keep their edge rules (:mod:`.tiling`) and do
not resize: a window size that differs from the input is refused for them, as for the OpenCV flags no torch mode
matches (``interpolation-lanczos4``, ``interpolation-max``, ``wrap-fill-outliers``, ``wrap-inverse-map``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlm_export.errors import ConfigurationError, MissingDependencyError
from mlm_export.prediction import preprocess
from mlm_export.prediction.spec import InputSpec

#: MLM ``resize_type`` -> ``torch.nn.functional.interpolate`` mode.
MODES = {
    "interpolation-nearest": "nearest",
    "interpolation-linear": "bilinear",
    "interpolation-cubic": "bicubic",
    "interpolation-area": "area",
}


def check(spec: InputSpec, window: tuple[int, int], tile: tuple[int, int], inputs: int) -> None:
    """Refuse a window of another size than the model's input unless ``resize_type`` is an interpolation we run.

    Raises:
        ConfigurationError: naming the input, its ``resize_type`` and both sizes.
    """
    if window == tile:
        return
    if spec.resize_type not in MODES:
        raise ConfigurationError(
            f"window_size {window[0]} x {window[1]} differs from input {spec.name!r}'s {tile[0]} x {tile[1]}, and its "
            f"resize_type {spec.resize_type!r} does not resize (predict interpolates for {', '.join(MODES)}).",
            hint="Leave window_size (--window-size) out, or run the model with load_model.",
        )
    if inputs > 1:
        raise ConfigurationError(
            f"window_size is given for a model of {inputs} inputs; predict resizes single-input models only.",
            hint="Leave window_size (--window-size) out.",
        )


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # an ONNX-only install
        raise MissingDependencyError(
            f"resize_type interpolation runs torch.nn.functional.interpolate: {exc}.",
            hint="pip install torch, or leave window_size (--window-size) out.",
        ) from exc
    return torch


def interpolate(values: np.ndarray, size: tuple[int, int], resize_type: str) -> np.ndarray:
    """``values`` [..., h, w] resized to ``size`` by ``resize_type``'s torch mode (in ``values``' float type)."""
    torch = _torch()
    mode = MODES[resize_type]
    lead = values.shape[:-2]
    tensor = torch.from_numpy(np.ascontiguousarray(values).reshape(1, -1, *values.shape[-2:]))
    options = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    resized = torch.nn.functional.interpolate(tensor, size=size, mode=mode, **options)
    return resized.numpy().reshape(*lead, *size)


def model_space(spec: InputSpec, names: Any, part: np.ndarray, valid: np.ndarray, window: tuple[int, int],
                tile: tuple[int, int], *, trust_code: bool) -> np.ndarray:  # fmt: skip
    """Steps 1-3 of the module docstring for one window: [C, *tile] float64 in the model's value space."""
    planes = preprocess.channels(spec, names, np.asarray(part), trust_code=trust_code)
    padded = np.zeros((planes.shape[0], *window), dtype=np.float64)
    padded[:, : planes.shape[1], : planes.shape[2]] = planes
    mask = np.zeros(window, dtype=np.float64)
    mask[: valid.shape[0], : valid.shape[1]] = np.asarray(valid)
    resized = interpolate(padded, tile, spec.resize_type or "")
    kept = interpolate(mask, tile, "interpolation-nearest") > 0.5
    return np.where(kept[None], preprocess.scale(spec, resized, trust_code=trust_code), 0.0)


def to_window(result: np.ndarray, tile: tuple[int, int], window: tuple[int, int], resize_type: str) -> np.ndarray:
    """A dense result [B, K, k*th, k*tw] resized back to [B, K, k*wh, k*ww] (``k``: its scale over the input)."""
    factor = max(1, result.shape[-2] // tile[0])
    size = (window[0] * factor, window[1] * factor)
    values = result if result.dtype.kind == "f" else result.astype(np.float32)
    return interpolate(values, size, resize_type)
