"""Windows over the scene from the declared input shape, their batches, and the stitching of dense outputs.

* Fixed height/width: windows of exactly that size. A dynamic one: a square tile (a multiple of 32, 64..1024)
  whose estimated forward memory fits the dry-run memory cap (:mod:`mlm_export.dryrun`), or ``tile_size``.
* Dense outputs overlap by ``overlap`` pixels on each inner side; the blending rule is **centre crop**: each
  output pixel comes from the one window whose core holds it (the window minus ``overlap`` on every side that is
  not a scene edge), so nothing is averaged and neighbouring windows never disagree at a seam. Per-tile outputs
  use windows side by side (no overlap).
* Outputs of another resolution (super-resolution: ``k`` times the window's height and width, ``k`` a whole
  number) are stitched the same way with every core, overlap and valid mask scaled by ``k``
  (:func:`output_factor`, :func:`fine_core`); the map is written on the input grid refined ``k`` times.
* Windows reaching past the scene are padded with 0 (``resize_type`` ``crop`` instead drops incomplete
  windows of a per-tile output); windows whose pixels are all nodata are skipped; a scene smaller than a fixed
  input is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mlm_export.errors import DataError

#: Bytes per pixel of a dynamic tile, per channel in and out, for the forward's activations (an estimate).
ACTIVATION_BYTES_PER_CHANNEL = 4 * 64
#: Default overlap of dense windows, in pixels (cut to a quarter of the tile).
DEFAULT_OVERLAP = 16


@dataclass(frozen=True)
class Window:
    """A window of the scene: its offset and size, and the core that it contributes to a dense output."""

    row: int
    col: int
    height: int
    width: int
    core: tuple[int, int, int, int]  # row0, row1, col0, col1 in scene pixels


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    stride = tile - 2 * overlap
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(starts[-1] + stride)
    return starts


def _core(start: int, tile: int, overlap: int, length: int) -> tuple[int, int]:
    low = start + overlap if start > 0 else 0
    high = start + tile - overlap if start + tile < length else length
    return low, min(high, length)


def windows(shape: tuple[int, int], tile: tuple[int, int], overlap: int, *, crop: bool = False) -> list[Window]:
    """Windows covering a scene of ``shape`` (rows, cols) with tiles of ``tile`` and ``overlap`` per side.

    ``crop`` drops windows that reach past the scene (resize_type ``crop``); otherwise they are padded.
    """
    rows, cols = shape
    out = []
    for row in _starts(rows, tile[0], overlap):
        for col in _starts(cols, tile[1], overlap):
            if crop and (row + tile[0] > rows or col + tile[1] > cols):
                continue
            r0, r1 = _core(row, tile[0], overlap, rows)
            c0, c1 = _core(col, tile[1], overlap, cols)
            out.append(Window(row, col, tile[0], tile[1], (r0, r1, c0, c1)))
    return out


def require_fits(shape: tuple[int, int], tile: tuple[int, int], what: str) -> None:
    """Refuse a scene smaller than a fixed input.

    Raises:
        DataError: naming both sizes.
    """
    if shape[0] < tile[0] or shape[1] < tile[1]:
        raise DataError(
            f"{what} is {shape[0]} x {shape[1]} pixels, smaller than the model's fixed input of {tile[0]} x {tile[1]}.",
            hint="Pass a larger scene, or a finer --resolution.",
        )


def choose_tile(budget: int | None, batch: int, channels_in: int, channels_out: int, scene: tuple[int, int]) -> int:
    """Side of a dynamic square tile: the largest multiple of 32 (64..1024) whose estimate fits ``budget``."""
    per_pixel = ACTIVATION_BYTES_PER_CHANNEL * (channels_in + channels_out)
    largest = max(scene)
    side = 1024
    while side > 64 and (budget is not None and batch * side * side * per_pixel > budget or side // 2 >= largest):
        side //= 2
    return side


def cut(planes: np.ndarray, window: Window) -> np.ndarray:
    """The window's pixels [C, h, w], padded with 0 where it reaches past the scene."""
    part = planes[:, window.row : window.row + window.height, window.col : window.col + window.width]
    if part.shape[1:] == (window.height, window.width):
        return part
    padded = np.zeros((planes.shape[0], window.height, window.width), dtype=planes.dtype)
    padded[:, : part.shape[1], : part.shape[2]] = part
    return padded


def has_data(valid: np.ndarray, window: Window) -> bool:
    """Whether any pixel of the window is valid (all-nodata windows are skipped)."""
    return bool(valid[window.row : window.row + window.height, window.col : window.col + window.width].any())


def batches(items: Sequence[Window], size: int) -> Iterator[list[Window]]:
    """``items`` in batches of ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def output_factor(shape: tuple[int, ...], tile: tuple[int, int], name: str) -> int:
    """``k``: how many times finer than the input a dense output of ``shape`` (height, width) is; 1 keeps the grid.

    Raises:
        DataError: the output is not the same whole multiple ``k`` >= 1 of the window in height and width.
    """
    height, width = int(shape[0]), int(shape[1])
    factor = height // tile[0]
    if factor < 1 or height != factor * tile[0] or width != factor * tile[1]:
        raise DataError(
            f"Output {name!r} is {height} x {width} for a {tile[0]} x {tile[1]} window; predict stitches maps of "
            "the window's size or a whole multiple k of it (super-resolution) only.",
            hint="Run models whose output is coarser than their input, or not a whole multiple, with load_model.",
        )
    return factor


def fine_core(result: np.ndarray, valid: np.ndarray, window: Window, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The window's core of a dense result [K, k*h, k*w] and of its valid mask [h, w], both at the output's grid."""
    r0, r1, c0, c1 = window.core
    rows, cols = slice(r0 - window.row, r1 - window.row), slice(c0 - window.col, c1 - window.col)
    fine = result[:, rows.start * factor : rows.stop * factor, cols.start * factor : cols.stop * factor]
    mask = np.asarray(valid)[rows, cols]
    if factor > 1:
        mask = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)
    return np.ascontiguousarray(fine), mask


def piece_factor(values: np.ndarray, core: tuple[int, int, int, int]) -> int:
    """``k`` of a stitched piece: its rows over its core's rows in scene pixels."""
    return int(values.shape[-2]) // max(1, core[1] - core[0])


def stitch(target: np.ndarray, result: np.ndarray, window: Window) -> None:
    """Write a window's dense result [K, h, w] into ``target`` [K, H, W], core only (the centre-crop rule)."""
    r0, r1, c0, c1 = window.core
    target[:, r0:r1, c0:c1] = result[:, r0 - window.row : r1 - window.row, c0 - window.col : c1 - window.col]
