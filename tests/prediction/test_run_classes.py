"""The class map of a dense output: argmax over the channels as numpy's (first highest wins, NaN as -inf)."""

from __future__ import annotations

import numpy as np
import pytest

from mlm_export.prediction import lazy, run, tiling
from mlm_export.prediction.spec import OutputSpec


@pytest.mark.parametrize("channels", [1, 2, 3, 7])
def test_the_class_map_is_numpys_argmax_with_ties_infinities_and_nan(channels: int) -> None:
    rng = np.random.default_rng(channels)
    scores = rng.integers(-3, 3, size=(channels, 40, 50)).astype(np.float32)  # many ties
    scores[0, 0, 0], scores[-1, 1, 1], scores[-1, 2, 2] = np.inf, -np.inf, np.nan
    valid = rng.random((40, 50)) > 0.1
    classes = tuple({"name": f"c{i}", "value": 10 + i} for i in range(channels))
    out = OutputSpec("classes", ("semantic-segmentation",), ("batch", "channel", "height", "width"), "float32", classes)
    piece = lazy.Piece(tiling.Window(0, 0, 40, 50, (0, 40, 0, 50)), scores, valid)
    expected = np.where(valid, 10 + np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=0), 255).astype(np.uint8)
    got = run._class_core(out, piece)
    assert got.dtype == np.uint8 and got.shape == (1, 40, 50)
    assert np.array_equal(got[0], expected)
    finite = np.nan_to_num(scores, nan=0.0)  # the one-pass path (no NaN)
    expected = np.where(valid, 10 + np.argmax(finite, axis=0), 255).astype(np.uint8)
    assert np.array_equal(run._class_core(out, lazy.Piece(piece.window, finite, valid))[0], expected)
