"""Windows cover the scene; centre-crop cores tile it exactly once; padding and crop at the edges."""

from __future__ import annotations

import numpy as np
import pytest

from mlm_export.errors import DataError
from mlm_export.prediction import tiling


@pytest.mark.parametrize(("shape", "tile", "overlap"), [((120, 90), (64, 64), 4), ((64, 64), (64, 64), 16),
                                                       ((200, 33), (32, 32), 8), ((10, 10), (64, 64), 16)])  # fmt: skip
def test_cores_cover_every_pixel_exactly_once(shape, tile, overlap) -> None:
    count = np.zeros(shape, dtype=int)
    for window in tiling.windows(shape, tile, overlap):
        r0, r1, c0, c1 = window.core
        assert window.row <= r0 and r1 <= window.row + window.height
        count[r0:r1, c0:c1] += 1
    assert (count == 1).all()


def test_stitch_of_identity_windows_rebuilds_the_scene() -> None:
    scene = np.arange(3 * 50 * 70, dtype=np.float64).reshape(3, 50, 70)
    target = np.full_like(scene, np.nan)
    for window in tiling.windows((50, 70), (32, 32), 6):
        tiling.stitch(target, tiling.cut(scene, window), window)
    assert np.array_equal(target, scene)


def test_edge_windows_are_zero_padded_or_dropped_with_crop() -> None:
    planes = np.ones((2, 40, 40))
    windows = tiling.windows((40, 40), (32, 32), 0)
    assert [(w.row, w.col) for w in windows] == [(0, 0), (0, 32), (32, 0), (32, 32)]
    last = tiling.cut(planes, windows[-1])
    assert last.shape == (2, 32, 32) and last[:, :8, :8].all() and not last[:, 8:, :].any()
    assert [(w.row, w.col) for w in tiling.windows((40, 40), (32, 32), 0, crop=True)] == [(0, 0)]


def test_scene_smaller_than_fixed_input_is_refused() -> None:
    with pytest.raises(DataError, match="20 x 40 pixels"):
        tiling.require_fits((20, 40), (32, 32), "The scene")


def test_dynamic_tile_shrinks_to_the_memory_cap() -> None:
    per_pixel = tiling.ACTIVATION_BYTES_PER_CHANNEL * (3 + 8)
    assert tiling.choose_tile(None, 1, 3, 8, (5000, 5000)) == 1024
    assert tiling.choose_tile(256 * 256 * per_pixel, 1, 3, 8, (5000, 5000)) == 256
    assert tiling.choose_tile(None, 1, 3, 8, (100, 90)) == 128
