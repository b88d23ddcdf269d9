"""Writers of ``predict``'s outputs: a Cloud-Optimized GeoTIFF for maps, GeoJSON/GeoParquet for per-tile results.

* Class maps: one integer band of class values (uint8 when every value and the nodata value 255 fit, else
  uint16 with 65535), a colour table from the classes' ``color_hint``; optional scores: the raw outputs (after
  ``post_processing_function``), float32, one band per class, NaN where there is no data.
* Other maps (regression): float32, one band per output channel, NaN nodata.
* Per-tile results: one feature per window (footprint in WGS84, as GeoJSON requires) with ``class_value``,
  ``class_name`` and ``score`` (the highest output) for classifications, else ``embedding`` (the output vector).
  ``.parquet`` outputs are GeoParquet (geopandas and pyarrow needed), anything else GeoJSON.

Each writer writes the path it is given (a staged temporary; :mod:`.run` publishes it). Maps stream: a
:class:`StagedRaster` is a tiled GeoTIFF written window by window beside its target, copied to the COG (GDAL's COG
driver cannot write windows) when it is finished, so no writer holds the whole map. A map ``factor`` times finer than
the input (super-resolution) has ``factor`` times its rows and columns and the transform scaled by ``1/factor``;
windows are still given in scene pixels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlm_export.errors import MissingDependencyError


def class_dtype(classes: Sequence[Mapping[str, Any]]) -> tuple[np.dtype, int]:
    """The integer type of a class map and its nodata value (the type's maximum, never a class value)."""
    values = [int(c["value"]) for c in classes]
    if max(values, default=0) < 255 and min(values, default=0) >= 0:
        return np.dtype("uint8"), 255
    return np.dtype("uint16"), 65535


def colormap(classes: Sequence[Mapping[str, Any]]) -> dict[int, tuple[int, int, int, int]]:
    """{class value: RGBA} from each class's ``color_hint`` (hex RRGGBB); classes without one are left out."""
    table = {}
    for entry in classes:
        hint = entry.get("color_hint")
        if isinstance(hint, str) and len(hint) == 6:
            table[int(entry["value"])] = (int(hint[0:2], 16), int(hint[2:4], 16), int(hint[4:6], 16), 255)
    return table


def write_cog(
    path: Path,
    data: np.ndarray,
    transform: Any,
    crs: Any,
    nodata: float | None,
    *,
    colors: Mapping[int, tuple[int, int, int, int]] | None = None,
    descriptions: Sequence[str] | None = None,
) -> None:
    """Write ``data`` [bands, H, W] as a COG (GDAL's COG driver) on the given grid."""
    import rasterio

    count, height, width = data.shape
    profile = {"driver": "COG", "height": height, "width": width, "count": count, "dtype": data.dtype.name,
               "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate"}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colors:
            dst.write_colormap(1, dict(colors))
        for index, text in enumerate(descriptions or [], start=1):
            dst.set_band_description(index, text)


class StagedRaster:
    """A map written window by window into a tiled GeoTIFF (``<path>.part.tif``), then copied to the COG ``path``."""

    def __init__(self, path: Path, count: int, shape: tuple[int, int], dtype: Any, transform: Any, crs: Any,
                 nodata: float | None, *, colors: Mapping[int, tuple[int, int, int, int]] | None = None,
                 descriptions: Sequence[str] | None = None, factor: int = 1) -> None:  # fmt: skip
        import rasterio
        from affine import Affine

        self.path, self.nodata, self.dtype, self.factor = path, nodata, np.dtype(dtype), int(factor)
        shape, transform = (shape[0] * self.factor, shape[1] * self.factor), transform * Affine.scale(1 / self.factor)
        self.part = path.with_name(f"{path.name}.part.tif")
        profile = {"driver": "GTiff", "height": shape[0], "width": shape[1], "count": count, "dtype": self.dtype.name,
                   "crs": crs, "transform": transform, "nodata": nodata, "tiled": True, "blockxsize": 256,
                   "blockysize": 256, "compress": "deflate", "zlevel": 1, "bigtiff": "IF_SAFER"}  # fmt: skip
        self._dst = rasterio.open(self.part, "w", **profile)
        if colors:
            self._dst.write_colormap(1, dict(colors))
        for index, text in enumerate(descriptions or [], start=1):
            self._dst.set_band_description(index, text)

    def write(self, core: tuple[int, int, int, int], values: np.ndarray | None) -> None:
        """Write ``values`` [count, k*h, k*w] at the core (row0, row1, col0, col1 in scene pixels); None: nodata."""
        from rasterio.windows import Window

        r0, r1, c0, c1 = (edge * self.factor for edge in core)
        if values is None:
            fill = np.nan if self.nodata is None else self.nodata
            values = np.full((self._dst.count, r1 - r0, c1 - c0), fill, dtype=self.dtype)
        self._dst.write(values.astype(self.dtype, copy=False), window=Window(c0, r0, c1 - c0, r1 - r0))

    def finish(self) -> None:
        """Close the GeoTIFF and copy it to the COG, overviews as GDAL's COG driver makes them.

        Deflate level 1: 2-4x faster than GDAL's default 6 for about 15 % more bytes on a noisy map (a class map
        of real data compresses well at any level); ``num_threads`` compresses blocks on every core, same bytes.
        """
        from rasterio.shutil import copy

        self._dst.close()
        copy(self.part, self.path, driver="COG", compress="deflate", level=1, num_threads="ALL_CPUS")
        self.part.unlink()

    def close(self) -> None:
        """Close without finishing (a failure): the staged part is left to the staging directory's cleanup."""
        if not self._dst.closed:
            self._dst.close()


def footprint(window: Any, transform: Any, crs: Any) -> dict[str, Any]:
    """The window's outline as a GeoJSON polygon in WGS84."""
    from rasterio.warp import transform_geom

    right, bottom = window.col + window.width, window.row + window.height
    corners = [(window.col, window.row), (right, window.row), (right, bottom), (window.col, bottom)]
    ring = [list(transform * corner) for corner in corners]
    polygon = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    return transform_geom(crs, "EPSG:4326", polygon)


def tile_features(
    windows: Sequence[Any],
    results: Sequence[np.ndarray],
    transform: Any,
    crs: Any,
    classes: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One GeoJSON feature per window: its class (value, name, score) or its embedding."""
    names = {int(c["value"]): c.get("name") for c in classes}
    features = []
    for window, result in zip(windows, results, strict=True):
        vector = np.asarray(result, dtype=np.float64).reshape(-1)
        properties: dict[str, Any] = {"row": window.row, "col": window.col}
        if classes:
            value = int(np.argmax(vector))
            properties.update(class_value=value, class_name=names.get(value), score=float(vector[value]))
        else:
            properties["embedding"] = [float(v) for v in vector]
        features.append({"type": "Feature", "geometry": footprint(window, transform, crs), "properties": properties})
    return features


def write_features(path: Path, features: list[dict[str, Any]], *, parquet: bool) -> None:
    """Write the features as GeoJSON, or as GeoParquet when ``parquet``.

    Raises:
        MissingDependencyError: GeoParquet without geopandas/pyarrow.
    """
    if not parquet:
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
        return
    try:
        import geopandas
        import pyarrow  # noqa: F401 - the Parquet writer geopandas uses
    except ImportError as exc:
        raise MissingDependencyError(
            f"Writing GeoParquet ('{path.name}') needs geopandas and pyarrow: {exc}.",
            hint="pip install geopandas pyarrow, or write a .geojson output.",
        ) from exc
    frame = geopandas.GeoDataFrame.from_features(features, crs="EPSG:4326")
    frame.to_parquet(path)
