"""Pre-processing exactly as the Item says, in one order.

1. band ``expression``s: computed channels from the bands read (:mod:`.expressions`);
2. ``value_scaling`` per channel (one entry per channel, or one broadcast to all): ``min-max`` (x-min)/(max-min),
   ``z-score`` (x-mean)/stddev, ``clip``, ``clip-min``, ``clip-max``, ``offset`` x-value, ``scale`` x/value,
   ``processing`` (an expression of ``x``); omitted: no scaling, with one notice;
3. nodata pixels are set to 0 (in the model's value space);
4. windows are cut (:mod:`.tiling`, where ``resize_type`` decides the edges), then ``pre_processing_function``
   (an array of expressions applied in order) on each batch;
5. the cast to the input's ``data_type`` (the dtype *after* pre-processing): values outside its range are refused.

Steps 1-3 work on the whole scene in float64 (per-pixel operations), 4-5 on each batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlm_export.errors import DataError, ItemValidationError
from mlm_export.prediction.expressions import evaluate
from mlm_export.prediction.spec import InputSpec

logger = logging.getLogger("mlm_export")

_NUMPY_TYPES = {"float16": "float16", "float32": "float32", "float64": "float64", "uint8": "uint8",
                "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "int8": "int8", "int16": "int16",
                "int32": "int32", "int64": "int64", "bool": "bool", "cfloat32": "complex64",
                "cfloat64": "complex128"}  # fmt: skip


def channels(spec: InputSpec, names: Sequence[str], data: np.ndarray, *, trust_code: bool) -> np.ndarray:
    """The input's channels in order [C, H, W] (float64): read bands, and computed ones from their expressions.

    An input without bands (a DEM, an auxiliary grid) takes ``data``'s planes as they are.
    """
    if not spec.bands:
        return data.astype(np.float64)
    bands = {name: data[i].astype(np.float64) for i, name in enumerate(names)}
    planes = []
    for band in spec.bands:
        if band.expression is not None:
            expression = {"format": band.format, "expression": band.expression}
            value = evaluate(expression, bands, trust_code=trust_code, where=f"Band {band.name!r}")
            planes.append(np.broadcast_to(np.asarray(value, dtype=np.float64), data.shape[1:]))
        else:
            planes.append(bands[band.name])
    return np.stack(planes)


def _scale_one(x: np.ndarray, rule: Mapping[str, Any], where: str, trust_code: bool) -> np.ndarray:
    kind = rule.get("type")
    if kind == "min-max":
        return (x - rule["minimum"]) / (rule["maximum"] - rule["minimum"])
    if kind == "z-score":
        return (x - rule["mean"]) / rule["stddev"]
    if kind == "clip":
        return np.clip(x, rule["minimum"], rule["maximum"])
    if kind == "clip-min":
        return np.maximum(x, rule["minimum"])
    if kind == "clip-max":
        return np.minimum(x, rule["maximum"])
    if kind == "offset":
        return x - rule["value"]
    if kind == "scale":
        return x / rule["value"]
    if kind == "processing":
        return np.asarray(evaluate(rule, {"x": x, "A": x}, trust_code=trust_code, where=where), dtype=np.float64)
    raise ItemValidationError(f"{where} has value_scaling type {kind!r}, which MLM does not define.")


def scale(spec: InputSpec, planes: np.ndarray, *, trust_code: bool) -> np.ndarray:
    """``value_scaling`` applied per channel (float64); none when the Item omits it (one notice)."""
    rules = spec.value_scaling
    if not rules:
        logger.warning("Input %r declares no value_scaling: the bands are fed unscaled.", spec.name)
        return planes
    if len(rules) not in (1, len(planes)):
        raise ItemValidationError(
            f"Input {spec.name!r} has {len(rules)} value_scaling entries for {len(planes)} bands.",
            hint="Give one entry per band, or one for all.",
        )
    out = np.empty_like(planes)
    for index, plane in enumerate(planes):
        rule = rules[index] if len(rules) > 1 else rules[0]
        band = repr(spec.bands[index].name) if spec.bands else f"{index + 1} of input {spec.name!r}"
        out[index] = _scale_one(plane, rule, f"value_scaling of band {band}", trust_code)
    return out


def model_space(
    spec: InputSpec, names: Sequence[str], data: np.ndarray, valid: np.ndarray, *, trust_code: bool
) -> np.ndarray:
    """Steps 1-3: the scene as the model's channels, scaled, nodata set to 0 ([C, H, W] float64)."""
    planes = scale(spec, channels(spec, names, data, trust_code=trust_code), trust_code=trust_code)
    return np.where(valid[None], planes, 0.0)


def numpy_type(data_type: str) -> np.dtype:
    """The numpy dtype of an MLM ``data_type``.

    Raises:
        ItemValidationError: a type numpy has no equivalent for (``other``...).
    """
    if data_type not in _NUMPY_TYPES:
        raise ItemValidationError(f"Input data_type {data_type!r} has no numpy type; predict cannot feed it.")
    return np.dtype(_NUMPY_TYPES[data_type])


def finish_batch(spec: InputSpec, batch: np.ndarray, *, trust_code: bool) -> np.ndarray:
    """Steps 4-5 on a batch [B, C, H, W]: ``pre_processing_function`` in order, then the cast to ``data_type``.

    Raises:
        DataError: values outside the range of the input's ``data_type`` (or not finite for an integer type).
    """
    for index, expression in enumerate(spec.pre_processing):
        where = f"pre_processing_function[{index}] of input {spec.name!r}"
        batch = np.asarray(evaluate(expression, {"x": batch, "A": batch}, trust_code=trust_code, where=where))
    return cast(batch, numpy_type(spec.data_type), spec.name)


def cast(values: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``values`` as ``dtype``; refused when a value lies outside its range."""
    if dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        low, high = (info.min, info.max) if info is not None else (0, 1)
        if not np.isfinite(values).all() or values.min() < low or values.max() > high:
            raise DataError(
                f"Input {name!r}: after pre-processing the values span [{np.nanmin(values)}, {np.nanmax(values)}], "
                f"outside {dtype.name}'s range [{low}, {high}].",
                hint="Check the data (units, scale) against the Item's value_scaling.",
            )
    elif dtype.kind == "f":
        finite = values[np.isfinite(values)]
        limit = np.finfo(dtype).max
        if finite.size and (finite.min() < -limit or finite.max() > limit):
            raise DataError(
                f"Input {name!r}: after pre-processing values reach {np.abs(finite).max()}, beyond {dtype.name}'s "
                f"range (±{limit}).",
                hint="Check the data (units, scale) against the Item's value_scaling.",
            )
    return values.astype(dtype)
