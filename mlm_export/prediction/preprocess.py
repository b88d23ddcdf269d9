"""Pre-processing exactly as the Item says, in one order.

1. band ``expression``s: computed channels from the bands read (:mod:`.expressions`);
2. ``value_scaling`` per channel (one entry per channel, or one broadcast to all): ``min-max`` (x-min)/(max-min),
   ``z-score`` (x-mean)/stddev, ``clip``, ``clip-min``, ``clip-max``, ``offset`` x-value, ``scale`` x/value,
   ``processing`` (an expression of ``x``); omitted: no scaling, with one notice;
3. nodata pixels are set to 0 (in the model's value space);
4. windows are cut (:mod:`.tiling`, where ``resize_type`` decides the edges), then ``pre_processing_function``
   (an array of expressions applied in order) on each batch;
5. the cast to the input's ``data_type`` (the dtype *after* pre-processing): values outside its range are refused.

Steps 1-3 compute in float64 (per-pixel operations), 4-5 on each batch. :func:`batch` runs them all for a batch of
windows; for a float ``data_type`` without ``pre_processing_function`` it works one channel plane at a time in one
float64 buffer, in place, and casts each plane once into the batch (the same values as the whole-array steps, bit
for bit, without the float64 copies of the batch).
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
    """``x`` (float64) scaled by ``rule``, in place: the same operations as ``(x - mean) / stddev`` etc."""
    kind = rule.get("type")
    if kind == "min-max":
        np.subtract(x, rule["minimum"], out=x)
        np.divide(x, rule["maximum"] - rule["minimum"], out=x)
    elif kind == "z-score":
        np.subtract(x, rule["mean"], out=x)
        np.divide(x, rule["stddev"], out=x)
    elif kind == "clip":
        np.clip(x, rule["minimum"], rule["maximum"], out=x)
    elif kind == "clip-min":
        np.maximum(x, rule["minimum"], out=x)
    elif kind == "clip-max":
        np.minimum(x, rule["maximum"], out=x)
    elif kind == "offset":
        np.subtract(x, rule["value"], out=x)
    elif kind == "scale":
        np.divide(x, rule["value"], out=x)
    elif kind == "processing":
        value = np.asarray(evaluate(rule, {"x": x, "A": x}, trust_code=trust_code, where=where), dtype=np.float64)
        np.copyto(x, np.broadcast_to(value, x.shape))
    else:
        raise ItemValidationError(f"{where} has value_scaling type {kind!r}, which MLM does not define.")
    return x


def _rules(spec: InputSpec, count: int) -> tuple[Mapping[str, Any], ...] | None:
    """The ``value_scaling`` rules of ``count`` channels (None: none, with one notice)."""
    rules = spec.value_scaling
    if not rules:
        logger.warning("Input %r declares no value_scaling: the bands are fed unscaled.", spec.name)
        return None
    if len(rules) not in (1, count):
        raise ItemValidationError(
            f"Input {spec.name!r} has {len(rules)} value_scaling entries for {count} bands.",
            hint="Give one entry per band, or one for all.",
        )
    return rules


def _rule_of(spec: InputSpec, rules: Sequence[Mapping[str, Any]], index: int) -> tuple[Mapping[str, Any], str]:
    band = repr(spec.bands[index].name) if spec.bands else f"{index + 1} of input {spec.name!r}"
    return (rules[index] if len(rules) > 1 else rules[0]), f"value_scaling of band {band}"


def scale(spec: InputSpec, planes: np.ndarray, *, trust_code: bool) -> np.ndarray:
    """``value_scaling`` applied per channel (float64); none when the Item omits it (one notice)."""
    rules = _rules(spec, len(planes))
    if rules is None:
        return planes
    out = np.array(planes, dtype=np.float64)
    for index in range(len(out)):
        _scale_one(out[index], *_rule_of(spec, rules, index), trust_code)
    return out


def model_space(
    spec: InputSpec, names: Sequence[str], data: np.ndarray, valid: np.ndarray, *, trust_code: bool
) -> np.ndarray:
    """Steps 1-3: the scene as the model's channels, scaled, nodata set to 0 ([C, H, W] float64)."""
    planes = scale(spec, channels(spec, names, data, trust_code=trust_code), trust_code=trust_code)
    return np.where(valid[None], planes, 0.0)


def batch(spec: InputSpec, names: Sequence[str], parts: Sequence[np.ndarray], valids: Sequence[np.ndarray],
          tile: tuple[int, int], *, trust_code: bool) -> np.ndarray:  # fmt: skip
    """Steps 1-5 for windows' raw bands ``parts`` [C, h, w] (and valid masks): [B, C, *tile], padded with 0.

    The same values as :func:`model_space` + padding + :func:`finish_batch`, bit for bit.
    """
    dtype = numpy_type(spec.data_type)
    if spec.pre_processing or dtype.kind != "f":
        planes = [model_space(spec, names, np.asarray(p), np.asarray(v), trust_code=trust_code)
                  for p, v in zip(parts, valids, strict=True)]  # fmt: skip
        return finish_batch(spec, np.stack([pad(p, tile) for p in planes]), trust_code=trust_code)
    count = len(spec.bands) if spec.bands else int(np.asarray(parts[0]).shape[0])
    rules = _rules(spec, count)
    out = np.zeros((len(parts), count, *tile), dtype=dtype)
    for slot, part, valid in zip(out, parts, valids, strict=True):
        _fill(spec, names, np.asarray(part), ~np.asarray(valid), rules, slot, trust_code)
    return out


def _fill(spec: InputSpec, names: Sequence[str], part: np.ndarray, invalid: np.ndarray,
          rules: Sequence[Mapping[str, Any]] | None, slot: np.ndarray, trust_code: bool) -> None:  # fmt: skip
    """One window's channels into ``slot`` [C, *tile]: each plane read, scaled and zeroed at nodata in one buffer."""
    height, width = part.shape[1:]
    plane = np.empty((height, width), dtype=np.float64)
    where = {name: i for i, name in enumerate(names)}
    bands: dict[str, np.ndarray] | None = None
    for index in range(len(slot)):
        band = spec.bands[index] if spec.bands else None
        if band is None or band.expression is None:
            np.copyto(plane, part[index if band is None else where[band.name]])
        else:
            if bands is None:
                bands = {name: part[i].astype(np.float64) for i, name in enumerate(names)}
            expression = {"format": band.format, "expression": band.expression}
            value = evaluate(expression, bands, trust_code=trust_code, where=f"Band {band.name!r}")
            np.copyto(plane, np.broadcast_to(np.asarray(value, dtype=np.float64), plane.shape))
        if rules is not None:
            _scale_one(plane, *_rule_of(spec, rules, index), trust_code)
        np.copyto(plane, 0.0, where=invalid)
        _check_float(plane, slot.dtype, spec.name)
        slot[index, :height, :width] = plane


def pad(part: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    """``part`` [C, h, w] padded with 0 at its end to ``tile`` (h, w)."""
    if part.shape[-2:] == tile:
        return part
    padded = np.zeros((*part.shape[:-2], *tile), dtype=part.dtype)
    padded[..., : part.shape[-2], : part.shape[-1]] = part
    return padded


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
        _check_float(values, dtype, name)
    return values.astype(dtype)


def _check_float(values: np.ndarray, dtype: np.dtype, name: str) -> None:
    """Refuse finite values beyond ``dtype``'s range (NaN and infinities pass, as the model may take them)."""
    limit = np.finfo(dtype).max
    if not values.size or (-limit <= values.min() and values.max() <= limit):  # NaN fails both: look closer
        return
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < -limit or finite.max() > limit):
        raise DataError(
            f"Input {name!r}: after pre-processing values reach {np.abs(finite).max()}, beyond {dtype.name}'s "
            f"range (±{limit}).",
            hint="Check the data (units, scale) against the Item's value_scaling.",
        )
