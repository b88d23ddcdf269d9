"""DATA -> the model's bands on one grid: GeoTIFF/COG files through rioxarray, STAC data Items through odc-stac.

A band the model names is found by asset key, band ``name`` or ``common_name`` (STAC 1.1 ``bands``, ``eo:bands``),
a multi-band GeoTIFF's band descriptions or a single-band file's name (``B04.tif``), or an explicit
``--band NAME=FILE[:INDEX]``; names compare through :func:`mlm_export.stac.bands.band_key` (case, ``B08`` = ``B8``)
and the aliases the model Item's own band definitions give (``B04`` = ``red``). Bands are returned in the Item's
order, never the file's. Files are brought onto the finest band's grid (or ``resolution``/``crs``) with rioxarray's
``reproject_match`` (nearest neighbour); a STAC Item is read by ``odc.stac.load``. No resampling is hand-written.
An asset of a data Item that lists several bands (``bands``/``eo:bands``/``raster:bands``: a multi-band COG, a
Landsat/Planet-style asset) offers each of them: band ``i`` is read from index ``i`` of that asset (odc-stac's
``asset.i`` band); a one-band asset holding the same band is preferred, as odc-stac ranks its aliases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlm_export.errors import ArtifactNotFoundError, ConfigurationError, DataError, MissingBandError
from mlm_export.stac.bands import band_key


@dataclass
class Scene:
    """Bands on one grid: ``data[i]`` is band ``names[i]``; ``valid`` is False where any band is nodata."""

    names: list[str]
    data: np.ndarray
    valid: np.ndarray
    transform: Any
    crs: Any
    items: list[str] = field(default_factory=list)  # hrefs of the STAC data Items read (derived_from)
    files: list[str] = field(default_factory=list)  # the raster files read


@dataclass(frozen=True)
class _Candidate:
    """A band the data offers: the names it answers to, where it is (file and 1-based index, or an asset key)."""

    names: tuple[str, ...]
    path: str
    index: int = 1
    asset: str | None = None
    count: int = 1  # bands of the asset (odc-stac names band i of a multi-band asset "asset.i")

    @property
    def variable(self) -> str | None:
        """The name odc-stac loads this band of a STAC asset under: the key, or ``key.index`` in a multi-band asset."""
        return self.asset if self.asset is None or self.count == 1 else f"{self.asset}.{self.index}"


def _is_item(source: str) -> bool:
    return source.lower().split("?")[0].endswith(".json")


def parse_band_mapping(values: Sequence[str]) -> dict[str, tuple[str, int]]:
    """``NAME=FILE[:INDEX]`` entries -> {band name: (file, 1-based index)}.

    Raises:
        ConfigurationError: an entry has no ``=`` or a non-numeric index.
    """
    mapping: dict[str, tuple[str, int]] = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise ConfigurationError(f"--band {value!r} is not NAME=FILE[:INDEX].", hint="E.g. --band B04=red.tif:1.")
        path, colon, index = target.rpartition(":")
        if colon and index.isdigit() and path:
            mapping[name] = (path, int(index))
        else:
            mapping[name] = (target, 1)
    return mapping


def _file_candidates(path: str) -> list[_Candidate]:
    """The bands of one raster file: its band descriptions, and its file name when it holds one band."""
    import rasterio

    if "://" not in path and not Path(path).is_file():
        raise ArtifactNotFoundError(f"Data file '{path}' does not exist.", hint="Check the DATA paths.")
    try:
        with rasterio.open(path) as src:
            descriptions, count = src.descriptions, src.count
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"Cannot read data file '{path}': {exc}.", hint="Pass GeoTIFF/COG files.") from exc
    stem = Path(path.split("?")[0]).stem
    found = []
    for index in range(1, count + 1):
        names = [d for d in [descriptions[index - 1]] if d]
        if count == 1:
            names.append(stem)
        found.append(_Candidate(tuple(names) or (f"{stem}:{index}",), path, index))
    return found


def _asset_bands(asset: Any) -> list[Any]:
    """The band objects an asset lists: STAC 1.1 ``bands``, else ``eo:bands``, else ``raster:bands``."""
    fields = asset.extra_fields
    for key in ("bands", "eo:bands", "raster:bands"):
        if isinstance(fields.get(key), list) and fields[key]:
            return list(fields[key])
    return []


def _band_names(band: Any) -> list[str]:
    if not isinstance(band, Mapping):
        return []
    return [band[k] for k in ("name", "common_name", "eo:common_name") if isinstance(band.get(k), str)]


def _item_candidates(item: Any) -> list[_Candidate]:
    """The bands of a STAC data Item, single-band assets first (as odc-stac's aliases rank them).

    A one-band asset answers to its key and its band's ``name``/``common_name``; band ``i`` of a multi-band asset
    (``bands``/``eo:bands``/``raster:bands`` listing several) to that band's names and to ``key.i``.
    """
    found = []
    for key, asset in item.assets.items():
        bands = _asset_bands(asset)
        if not (asset.media_type is None or "tiff" in str(asset.media_type) or bands):
            continue
        href = asset.get_absolute_href()
        if len(bands) <= 1:
            names = [key, *(_band_names(bands[0]) if bands else [])]
            found.append(_Candidate(tuple(names), href, 1, key))
            continue
        for index, band in enumerate(bands, start=1):
            names = [*_band_names(band), f"{key}.{index}"]
            found.append(_Candidate(tuple(names), href, index, key, len(bands)))
    return sorted(found, key=lambda c: c.count)


def _match(
    needed: Sequence[str], candidates: Sequence[_Candidate], aliases: Mapping[str, set[str]]
) -> dict[str, _Candidate]:
    """Each needed band -> the first candidate answering to it.

    Raises:
        MissingBandError: listing every missing band and every available one.
    """
    chosen: dict[str, _Candidate] = {}
    for name in needed:
        keys = {band_key(name)} | aliases.get(band_key(name), set())
        hit = next((c for c in candidates if keys & {band_key(n) for n in c.names}), None)
        if hit is not None:
            chosen[name] = hit
    missing = [n for n in needed if n not in chosen]
    if missing:
        available = sorted({n for c in candidates for n in c.names})
        raise MissingBandError(
            f"The data lacks band(s) {', '.join(missing)} that the model reads; available: "
            f"{', '.join(available) or 'none'}.",
            missing=missing,
            available=available,
            hint="Pass the files that hold them, or map them with --band NAME=FILE[:INDEX].",
        )
    return chosen


def read_scene(
    data: Sequence[str | os.PathLike[str]],
    needed: Sequence[str],
    aliases: Mapping[str, set[str]],
    *,
    bands: Mapping[str, tuple[str, int]] | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    chunks: int | None = None,
) -> Scene:
    """Read the ``needed`` bands (in that order) from ``data`` onto one grid; lazily (dask arrays) with ``chunks``.

    Raises:
        MissingBandError: a band is not in the data.
        DataError: a file has no CRS, or files and STAC Items are mixed.
    """
    sources = [str(d) for d in data]
    if not sources:
        raise ConfigurationError("No DATA was given.", hint="Pass GeoTIFF files or a STAC Item of the data.")
    explicit = {name: _Candidate((name,), path, index) for name, (path, index) in (bands or {}).items()}
    items = [s for s in sources if _is_item(s)]
    if items and len(items) != len(sources):
        raise DataError(
            f"DATA mixes STAC Items ({', '.join(items)}) and raster files.",
            hint="Pass either one STAC Item of the data or raster files (and --band for extra files).",
        )
    if items:
        return _read_items(items, needed, aliases, resolution, crs, chunks)
    candidates = [c for s in sources for c in _file_candidates(s)]
    for candidate in explicit.values():
        _file_candidates(candidate.path)  # exists and is a raster
    chosen = {**_match([n for n in needed if n not in explicit], candidates, aliases), **explicit}
    return _read_files([chosen[n] for n in needed], list(needed), resolution, crs, chunks)


def _open_band(candidate: _Candidate, chunks: int | None = None, *, select: bool = True) -> Any:
    import rioxarray

    lazily = {"band": 1, "y": chunks, "x": chunks} if chunks else None
    array = rioxarray.open_rasterio(candidate.path, chunks=lazily)
    if select:
        array = array.sel(band=candidate.index, drop=True)
    if array.rio.crs is None:
        raise DataError(
            f"Data file '{candidate.path}' has no CRS, so it cannot be placed on a grid.",
            hint="Write the file with its CRS (e.g. gdal_edit.py -a_srs EPSG:32632).",
        )
    return array


def _read_files(chosen: list[_Candidate], names: list[str], resolution: float | None, crs: str | None,
                chunks: int | None = None) -> Scene:  # fmt: skip
    from rasterio.enums import Resampling

    arrays = [_open_band(c, chunks) for c in chosen]
    finest = min(arrays, key=lambda a: abs(a.rio.resolution()[0] * a.rio.resolution()[1]))
    target = finest
    if resolution is not None or crs is not None:
        target = finest.rio.reproject(crs or finest.rio.crs, resolution=resolution, resampling=Resampling.nearest)
    planes, valid = [], None
    for array in arrays:
        same = array.rio.crs == target.rio.crs and array.rio.transform() == target.rio.transform()
        if not same or array.shape != target.shape:
            array = array.rio.reproject_match(target, resampling=Resampling.nearest)
        values = array.data if chunks else np.asarray(array.values)
        ok = _valid(values, array.rio.nodata)
        valid = ok if valid is None else valid & ok
        planes.append(values)
    data = _stack(planes)
    return Scene(names, data, valid, target.rio.transform(), target.rio.crs, [], sorted({c.path for c in chosen}))


def _valid(values: Any, nodata: Any) -> Any:
    """Where ``values`` (numpy or dask) hold data: finite and not ``nodata``."""
    ok = np.isfinite(values) if values.dtype.kind == "f" else values == values
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        ok = ok & (values != nodata)
    return ok


def _stack(planes: list[Any]) -> Any:
    if isinstance(planes[0], np.ndarray):
        return np.stack(planes)
    import dask.array

    return dask.array.stack(planes)


def _read_items(
    hrefs: list[str], needed: Sequence[str], aliases: Mapping[str, set[str]], resolution: float | None,
    crs: str | None, chunks: int | None = None,
) -> Scene:  # fmt: skip
    import odc.stac
    import pystac

    items = [_open_item(pystac, h) for h in hrefs]
    candidates = [c for item in items for c in _item_candidates(item)]
    chosen = _match(needed, candidates, aliases)
    keys = list(dict.fromkeys(str(chosen[n].asset) for n in needed))
    for item in items:
        _fill_projection(item, keys)
        _list_bands(item, keys)
    options: dict[str, Any] = {"bands": list(dict.fromkeys(chosen[n].variable for n in needed)), "groupby": "solar_day"}
    if resolution is not None:
        options["resolution"] = resolution
    if crs is not None:
        options["crs"] = crs
    if chunks:
        options["chunks"] = {"x": chunks, "y": chunks}
    dataset = odc.stac.load(items, **options)
    planes, valid = [], None
    for name in needed:
        array = dataset[chosen[name].variable].isel(time=0)
        values = array.data if chunks else np.asarray(array.values)
        ok = _valid(values, array.attrs.get("nodata"))
        valid = ok if valid is None else valid & ok
        planes.append(values)
    geobox = dataset.odc.geobox
    return Scene(list(needed), _stack(planes), valid, geobox.affine, geobox.crs, [str(h) for h in hrefs], [])


def _open_item(pystac: Any, href: str) -> Any:
    """The data Item at ``href``.

    Raises:
        ArtifactNotFoundError: a local Item that does not exist. DataError: one that cannot be read or fetched.
    """
    if "://" not in href and not Path(href).is_file():
        raise ArtifactNotFoundError(f"Data Item '{href}' does not exist.", hint="Check the DATA paths.")
    from urllib3.exceptions import HTTPError

    try:
        return pystac.Item.from_file(href)
    except (OSError, ValueError, KeyError, HTTPError, pystac.STACError) as exc:
        raise DataError(
            f"Cannot read data Item '{href}': {exc}.", hint="Check that the URL is reachable and is a STAC Item."
        ) from exc


def _fill_projection(item: Any, keys: Sequence[str]) -> None:
    """Give assets without ``proj:`` grid fields the ones of their file (odc-stac needs them to place the pixels)."""
    import rasterio

    for key in keys:
        asset = item.assets[key]
        fields = asset.extra_fields
        if {"proj:shape", "proj:transform"} <= set(fields) and ({"proj:code", "proj:epsg", "proj:wkt2"} & set(fields)):
            continue
        try:
            src = rasterio.open(asset.get_absolute_href())
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(
                f"Cannot read asset {key!r} ('{asset.get_absolute_href()}') of data Item {item.id!r}: {exc}.",
                hint="Check that the URL is reachable and is a GeoTIFF.",
            ) from exc
        with src:
            if src.crs is None:
                raise DataError(
                    f"Asset {key!r} ('{asset.get_absolute_href()}') of data Item {item.id!r} has no CRS.",
                    hint="Write the file with its CRS.",
                )
            fields.update(
                {"proj:wkt2": src.crs.to_wkt(), "proj:shape": [src.height, src.width],
                 "proj:transform": list(src.transform)[:6]}
            )  # fmt: skip
    extension = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
    if extension not in item.stac_extensions:
        item.stac_extensions.append(extension)


def _list_bands(item: Any, keys: Sequence[str]) -> None:
    """Give multi-band assets that list their bands only in ``eo:bands`` a ``bands`` list of the same length.

    odc-stac counts an asset's bands from ``bands`` or ``raster:bands``; without this, an ``eo:bands``-only asset
    of 4 bands would be read as one band.
    """
    for key in keys:
        fields = item.assets[key].extra_fields
        listed = fields.get("eo:bands")
        if fields.get("bands") or not isinstance(listed, list) or len(listed) < 2:
            continue
        raster = fields.get("raster:bands")
        same = isinstance(raster, list) and len(raster) == len(listed)
        fields["bands"] = [
            {k: v for k, v in (raster[i] if same else {}).items() if k in ("nodata", "data_type", "unit")}
            for i in range(len(listed))
        ]  # fmt: skip


def parse_input_mapping(values: Sequence[str]) -> dict[str, str]:
    """``NAME=PATH`` entries (``--input``) -> {input name: path or URL}.

    Raises:
        ConfigurationError: an entry has no ``=``, or a name is given twice.
    """
    mapping: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigurationError(f"--input {value!r} is not NAME=PATH.", hint="E.g. --input dem=dem.tif.")
        if name in mapping:
            raise ConfigurationError(f"--input {name!r} is given twice.", hint="Give each input once.")
        mapping[name] = path
    return mapping


def read_inputs(scene: Scene, specs: Sequence[Any], inputs: Mapping[str, str | os.PathLike[str]]) -> dict[str, Any]:
    """Each input without bands (a DEM, an auxiliary grid) read from ``inputs[name]`` onto the scene's grid.

    Every band of the file is one channel, in the file's order; rioxarray's ``reproject`` brings it onto the scene's
    CRS, transform and shape (nearest neighbour). Its nodata pixels become nodata of the scene (``scene.valid``).

    Returns:
        {input name: planes [C, H, W]}.

    Raises:
        ConfigurationError: an input without bands is not given, or ``inputs`` names an unknown input or one that
            reads bands from DATA.
        DataError: the file has no CRS, cannot be read, or has another channel count than the input declares.
    """
    from rasterio.enums import Resampling

    names = {spec.name: spec for spec in specs}
    for name in inputs:
        if name not in names or names[name].bands:
            what = "reads its bands from DATA" if name in names else "is not an input of the model Item"
            raise ConfigurationError(
                f"--input {name}=... : {name!r} {what}; inputs without bands: "
                f"{', '.join(s.name for s in specs if not s.bands) or 'none'}.",
                hint="Give --input NAME=PATH for the Item's inputs that name no bands.",
            )
    planes: dict[str, Any] = {}
    for spec in (s for s in specs if not s.bands):
        if spec.name not in inputs:
            raise ConfigurationError(
                f"Input {spec.name!r} of the model Item names no bands, and no file was given for it.",
                hint=f"Pass it as --input {spec.name}=PATH (inputs={{{spec.name!r}: path}}).",
            )
        path = str(inputs[spec.name])
        _file_candidates(path)  # exists and is a raster
        array = _open_band(_Candidate((spec.name,), path), select=False)
        rows, cols = scene.valid.shape
        array = array.rio.reproject(scene.crs, shape=(rows, cols), transform=scene.transform,
                                    resampling=Resampling.nearest)  # fmt: skip
        values = np.asarray(array.values)
        if spec.channels > 0 and values.shape[0] != spec.channels:
            raise DataError(
                f"Input {spec.name!r} ('{path}') has {values.shape[0]} band(s); the model Item declares "
                f"{spec.channels} channel(s).",
                hint=f"Pass a file with {spec.channels} band(s) for --input {spec.name}.",
            )
        scene.valid &= _valid(values, array.rio.nodata).all(axis=0)
        scene.files.append(path)
        planes[spec.name] = values
    return planes
