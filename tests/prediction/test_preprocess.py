"""Every MLM value_scaling type, computed by hand; the cast refuses values outside the input type."""

from __future__ import annotations

import numpy as np
import pytest

from mlm_export.errors import DataError
from mlm_export.prediction import preprocess
from mlm_export.prediction.spec import Band, InputSpec

X = np.array([[[-5.0, 0.0, 3.0, 250.0]]])


def _spec(rule: dict, data_type: str = "float32") -> InputSpec:
    return InputSpec("input", (Band("B1"),), -1, -1, -1, data_type, (rule,), None, ())


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"type": "min-max", "minimum": -5, "maximum": 245}, (X + 5) / 250),
        ({"type": "z-score", "mean": 2, "stddev": 4}, (X - 2) / 4),
        ({"type": "clip", "minimum": 0, "maximum": 3}, np.clip(X, 0, 3)),
        ({"type": "clip-min", "minimum": 0}, np.maximum(X, 0)),
        ({"type": "clip-max", "maximum": 3}, np.minimum(X, 3)),
        ({"type": "offset", "value": 10}, X - 10),
        ({"type": "scale", "value": 4}, X / 4),
        ({"type": "processing", "format": "gdal-calc", "expression": "x * 2 + 1"}, X * 2 + 1),
    ],
)
def test_value_scaling_types(rule: dict, expected: np.ndarray) -> None:
    np.testing.assert_allclose(preprocess.scale(_spec(rule), X.copy(), trust_code=False), expected)


def test_cast_refuses_values_outside_the_type_and_keeps_those_inside() -> None:
    with pytest.raises(DataError, match=r"outside uint8's range \[0, 255\]"):
        preprocess.cast(X, np.dtype("uint8"), "input")
    assert preprocess.cast(np.array([0.0, 255.0]), np.dtype("uint8"), "input").tolist() == [0, 255]
    with pytest.raises(DataError, match="float16"):
        preprocess.cast(np.array([1e6]), np.dtype("float16"), "input")


def test_omitted_value_scaling_is_none_with_one_notice(caplog: pytest.LogCaptureFixture) -> None:
    spec = InputSpec("input", (Band("B1"),), -1, -1, -1, "float32", None, None, ())
    np.testing.assert_array_equal(preprocess.scale(spec, X.copy(), trust_code=False), X)
    assert [r.getMessage() for r in caplog.records] == [
        "Input 'input' declares no value_scaling: the bands are fed unscaled."
    ]


def _whole_array(spec: InputSpec, names: tuple[str, ...], parts: list, valids: list, tile: tuple[int, int]):
    """Steps 1-5 as the spec's order states them, on whole float64 arrays (the reference of the fast path)."""
    planes = [preprocess.model_space(spec, names, p, v, trust_code=False) for p, v in zip(parts, valids, strict=True)]
    padded = [np.pad(p, ((0, 0), (0, tile[0] - p.shape[1]), (0, tile[1] - p.shape[2]))) for p in planes]
    return preprocess.finish_batch(spec, np.stack(padded), trust_code=False)


@pytest.mark.parametrize(
    "rules",
    [
        ({"type": "z-score", "mean": 1000.3, "stddev": 417.1},),
        (
            {"type": "min-max", "minimum": 7, "maximum": 3999},
            {"type": "clip", "minimum": 10, "maximum": 900},
            {"type": "processing", "format": "gdal-calc", "expression": "x / 3.3 - 1"},
        ),  # fmt: skip
        None,
    ],
)
def test_a_batch_equals_the_whole_array_steps_bit_for_bit(rules: tuple | None) -> None:
    rng = np.random.default_rng(5)
    bands = (Band("B3"), Band("B1"), Band("NDX", expression="(B3 - B1) / (B3 + B1 + 0.1)", format="gdal-calc"))
    spec = InputSpec("input", bands, -1, 24, 24, "float32", rules, None, ())
    names = ("B1", "B2", "B3")
    parts = [rng.integers(0, 4000, size=(3, 24, 24), dtype=np.uint16),
             rng.integers(0, 4000, size=(3, 17, 24), dtype=np.uint16)]  # an edge window, padded  # fmt: skip
    valids = [rng.random((24, 24)) > 0.2, rng.random((17, 24)) > 0.2]
    fast = preprocess.batch(spec, names, parts, valids, (24, 24), trust_code=False)
    reference = _whole_array(spec, names, parts, valids, (24, 24))
    assert fast.dtype == reference.dtype == np.float32 and fast.shape == (2, 3, 24, 24)
    assert fast.tobytes() == reference.tobytes()
    assert (fast[1, :, 17:] == 0).all() and (fast[0][:, ~valids[0]] == 0).all()


def test_a_batch_refuses_values_beyond_a_float_type_and_passes_nan() -> None:
    spec = InputSpec("input", (Band("B1"),), -1, 2, 2, "float16", ({"type": "scale", "value": 0.01},), None, ())
    with pytest.raises(DataError, match="beyond float16's range"):
        preprocess.batch(spec, ("B1",), [np.full((1, 2, 2), 4000.0)], [np.ones((2, 2), bool)], (2, 2), trust_code=False)
    nan = np.array([[[np.nan, 1.0], [2.0, 3.0]]])
    out = preprocess.batch(spec, ("B1",), [nan], [np.ones((2, 2), bool)], (2, 2), trust_code=False)
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 1, 1] == 300.0
