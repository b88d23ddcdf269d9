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
