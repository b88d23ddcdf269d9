"""``predict``: run the model an Item publishes on real data, every step read from the Item.

load (verified, as :func:`~mlm_export.load_model`) -> read the bands onto one grid (:mod:`.sources`) ->
pre-process (:mod:`.preprocess`) -> windows and batches (:mod:`.tiling`) -> forward (:mod:`.forward`) -> stitch ->
write the COG or the per-tile features (:mod:`.outputs`) and the result Item (:mod:`.result_item`), staged and
published together: a failure or Ctrl-C leaves neither a partial file nor a half Item.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlm_export.errors import ConfigurationError, DataError
from mlm_export.files import Staging, exists_error, resolve_output
from mlm_export.prediction import forward, lazy, outputs, resize, tiling
from mlm_export.prediction.result_item import OutputFile, framework_versions, result_item
from mlm_export.prediction.sources import Scene, parse_band_mapping, read_inputs, read_scene
from mlm_export.prediction.spec import InputSpec, OutputSpec, batch_size, input_spec, input_specs, output_spec

#: Largest batch chosen from the memory cap when the Item suggests none.
MAX_BATCH = 16
#: ... and at most this many pixels per batch (4 tiles of 512 px): no slower per pixel on CPU (the activations stay
#: nearer the cache), a lower peak, and batches small enough to share evenly among dask workers.
MAX_BATCH_PIXELS = 2**20


@dataclass(frozen=True)
class PredictionResult:
    """What :func:`predict` wrote: the output file(s), the result Item, and the windows run and skipped."""

    output: Path
    item: Path
    files: tuple[Path, ...]
    windows: int
    skipped: int


@dataclass(frozen=True)
class _Plan:
    """The windows to run, their batch size, and what the model gives back."""

    tile: tuple[int, int]
    overlap: int
    batch: int
    windows: list[tiling.Window]
    window: tuple[int, int] | None = None  # windows of another size than the input (resize_type), else None


def _outputs_of(output: Path, spec: OutputSpec, scores: bool) -> list[Path]:
    paths = [output, output.with_suffix(".json")]
    if scores and spec.dense and spec.is_classes:
        paths.append(output.with_name(f"{output.stem}-scores.tif"))
    return paths


def _check_output(output: Path, dense: bool) -> None:
    suffix = output.suffix.lower()
    allowed = (".tif", ".tiff") if dense else (".geojson", ".parquet")
    if suffix not in allowed:
        raise ConfigurationError(
            f"Output '{output}' ends in {suffix or 'nothing'}; this model writes {' or '.join(allowed)} files.",
            hint=f"Name the output e.g. result{allowed[0]}.",
        )


def _plan(doc: Mapping[str, Any], spec: InputSpec, out: OutputSpec, scene: Scene, options: Mapping[str, Any]) -> _Plan:
    """Tile size (fixed, given or from the memory cap), overlap, batch size, and every window (none is read yet)."""
    from mlm_export.dryrun import DryRunLimits, available_memory, memory_budget, parse_size

    shape = scene.valid.shape
    weights = int((doc.get("properties") or {}).get("mlm:memory_size") or 0)
    budget = memory_budget(DryRunLimits(parse_size(options.get("max_dry_run_memory"))), weights, available_memory())
    suggested = batch_size(doc, spec)
    if spec.fixed:
        tile = (spec.height, spec.width)
    else:
        side = options.get("tile_size") or tiling.choose_tile(budget, suggested or 1, len(spec.bands), 8, shape)
        tile = (int(side), int(side))
    sized = (int(options["window_size"]),) * 2 if options.get("window_size") else tile  # resize_type
    resize.check(spec, sized, tile, len(input_specs(doc)))
    if spec.fixed:
        tiling.require_fits(shape, sized, f"The scene ({', '.join(scene.files or scene.items)})")
    tile, model_tile = sized, tile
    overlap = 0
    if out.dense:
        given = options.get("overlap")
        overlap = int(given) if given is not None else min(tiling.DEFAULT_OVERLAP, min(tile) // 4)
        if tile[0] - 2 * overlap < 1 or tile[1] - 2 * overlap < 1:
            raise ConfigurationError(f"overlap={overlap} leaves nothing of a {tile[0]} x {tile[1]} tile.")
    crop = spec.resize_type == "crop" and not out.dense
    every = tiling.windows(shape, tile, overlap, crop=crop)
    if suggested is None:
        per_tile = model_tile[0] * model_tile[1] * tiling.ACTIVATION_BYTES_PER_CHANNEL * (len(spec.bands) + 8)
        largest = min(MAX_BATCH, max(1, MAX_BATCH_PIXELS // (model_tile[0] * model_tile[1])))
        suggested = max(1, min(largest, (budget or per_tile * MAX_BATCH) // per_tile))
    return _Plan(model_tile, overlap, suggested, every, tile if tile != model_tile else None)


def _progress(total: int, progress: bool | None) -> Any:
    from tqdm import tqdm

    show = progress if progress is not None else sys.stderr.isatty()
    return tqdm(total=total, unit="tile", desc="predict", disable=not show, leave=False)


def _scene_footprint(scene: Scene) -> tuple[dict[str, Any], list[float]]:
    from rasterio.warp import transform_geom

    rows, cols = scene.valid.shape
    window = tiling.Window(0, 0, rows, cols, (0, rows, 0, cols))
    geometry = outputs.footprint(window, scene.transform, scene.crs)
    ring = transform_geom("EPSG:4326", "EPSG:4326", geometry)["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return geometry, [min(xs), min(ys), max(xs), max(ys)]


class _Counter:
    """Windows run and skipped, and the progress bar, as batches come back."""

    def __init__(self, total: int, progress: bool | None) -> None:
        self.ran = self.skipped = 0
        self.bar = _progress(total, progress)

    def count(self, pieces: list[lazy.Piece]) -> None:
        ran = sum(p.values is not None for p in pieces)
        self.ran, self.skipped = self.ran + ran, self.skipped + len(pieces) - ran
        self.bar.update(len(pieces))


def _dense_writers(stage: Path, output: Path, scene: Scene, out: OutputSpec, channels: int, scores: bool,
                   factor: int = 1) -> tuple[list[OutputFile], list[outputs.StagedRaster]]:  # fmt: skip
    """The staged map(s) of a dense output; ``factor`` times finer than the scene for super-resolution."""
    shape, grid = tuple(scene.valid.shape), (scene.transform, scene.crs)
    resolution = _metres_per_pixel(scene, factor)
    if out.is_classes:
        dtype, nodata = outputs.class_dtype(out.classes)
        band = {"name": out.name, "data_type": dtype.name, "nodata": nodata, **resolution}
        files = [OutputFile("data", stage / output.name, output.name, [band], out.classes)]
        writers = [outputs.StagedRaster(stage / output.name, 1, shape, dtype, *grid, nodata,
                                        colors=outputs.colormap(out.classes), descriptions=[out.name],
                                        factor=factor)]  # fmt: skip
        if scores:
            name = f"{output.stem}-scores.tif"
            names = [str(c.get("name", c["value"])) for c in out.classes]
            writers.append(outputs.StagedRaster(stage / name, len(names), shape, "float32", *grid, np.nan,
                                                descriptions=names, factor=factor))  # fmt: skip
            bands = [{"name": n, "data_type": "float32", "nodata": "nan", **resolution} for n in names]
            files.append(OutputFile("scores", stage / name, name, bands, out.classes))
        return files, writers
    names = [f"{out.name}_{i + 1}" if channels > 1 else out.name for i in range(channels)]
    writers = [outputs.StagedRaster(stage / output.name, channels, shape, "float32", *grid, np.nan, descriptions=names,
                                    factor=factor)]  # fmt: skip
    bands = [{"name": n, "data_type": "float32", "nodata": "nan", **resolution} for n in names]
    return [OutputFile("data", stage / output.name, output.name, bands)], writers


def _metres_per_pixel(scene: Scene, factor: int) -> dict[str, float]:
    """``{"spatial_resolution": m}`` of the map written ``factor`` times finer than the scene (``raster:bands``).

    Empty when the grid's CRS is not projected in metres: the raster extension states the resolution in metres.
    """
    from pyproj import CRS  # rioxarray's CRS and odc-geo's both give their WKT

    if scene.crs is None:
        return {}
    crs = CRS.from_user_input(scene.crs if isinstance(scene.crs, str) else scene.crs.to_wkt())
    if not crs.is_projected or {a.unit_name for a in crs.axis_info[:2]} != {"metre"}:
        return {}
    width, height = abs(scene.transform.a), abs(scene.transform.e)
    return {"spatial_resolution": (width + height) / 2 / factor}


def _class_core(out: OutputSpec, piece: lazy.Piece) -> np.ndarray:
    dtype, nodata = outputs.class_dtype(out.classes)
    values = np.array([int(c["value"]) for c in out.classes])
    assert piece.values is not None and piece.valid is not None
    index = _argmax(piece.values)
    if index.max() >= len(values):
        raise DataError(f"Output {out.name!r} has {piece.values.shape[0]} channels for {len(values)} classes.")
    classes = np.take(values.astype(dtype), index)
    np.copyto(classes, dtype.type(nodata), where=~piece.valid)
    return classes[None]


def _argmax(scores: np.ndarray) -> np.ndarray:
    """``argmax(scores, axis=0)`` with NaN as -inf (the first highest wins), in one pass per channel."""
    if scores.dtype.kind != "f" or np.isnan(scores).any() or len(scores) > 255:
        return np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=0)
    index = np.zeros(scores.shape[1:], dtype=np.uint8)
    best = scores[0].copy()
    for channel in range(1, len(scores)):
        higher = scores[channel] > best
        index[higher] = channel
        np.copyto(best, scores[channel], where=higher)
    return index


def _dense_writes(stage: Path, target: Path, scene: Scene, out: OutputSpec, graph: list[Any], client: Any,
                 counter: _Counter, scores: bool) -> list[OutputFile]:  # fmt: skip
    """Run the graph and write each window's core into the staged map(s) as it comes back, then the COGs."""
    state: dict[str, Any] = {"files": None, "writers": [], "early": []}

    def consume(pieces: list[lazy.Piece]) -> None:
        counter.count(pieces)
        for piece in pieces:
            if state["files"] is None and piece.values is not None:
                factor = tiling.piece_factor(piece.values, piece.window.core)
                state["files"], state["writers"] = _dense_writers(stage, target, scene, out, len(piece.values), scores,
                                                                  factor)  # fmt: skip
                pieces = state.pop("early") + pieces  # windows skipped before the channel count was known
        if state["files"] is None:
            state["early"] += pieces
            return
        for piece in pieces:
            masked = None if piece.values is None else np.where(piece.valid[None], piece.values, np.nan)
            if out.is_classes:
                state["writers"][0].write(piece.window.core, None if piece.values is None else _class_core(out, piece))
                if scores:
                    state["writers"][1].write(piece.window.core, masked)
            else:
                state["writers"][0].write(piece.window.core, masked)

    try:
        lazy.execute(graph, client, consume)
        if state["files"] is None:
            raise _no_data(scene)
        for writer in state["writers"]:
            writer.finish()
    finally:
        for writer in state["writers"]:
            writer.close()
    return list(state["files"])


def _no_data(scene: Scene) -> DataError:
    return DataError(
        f"Every pixel of the data ({', '.join(scene.files or scene.items)}) is nodata for the bands the model reads.",
        hint="Pass a scene with data.",
    )


def predict(
    item: Any,
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    device: str = "cpu",
    bands: Mapping[str, str | tuple[str, int]] | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    overwrite: bool = False,
    trust_code: bool = False,
    model_class: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    max_dry_run_memory: int | str | None = None,
    progress: bool | None = None,
    scores: bool = False,
    tile_size: int | None = None,
    overlap: int | None = None,
    trust_pickle: bool = False,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    verify: bool = False,
    chunks: int | None = None,
    client: Any = None,
    window_size: int | None = None,
) -> PredictionResult:
    """Run the model an Item publishes on rasters or a STAC data Item, every step as the Item declares it.

    Args:
        item: the model Item: a ``pystac.Item``, dict, JSON path or URL; loaded and verified as by
            :func:`~mlm_export.load_model` (``trust_code``/``model_class``/``model_kwargs``/``trust_pickle`` alike).
        data: GeoTIFF/COG files, or one STAC Item (JSON path or URL) of the data whose assets hold the bands.
        output: a ``.tif`` (maps: a COG on the input grid) or ``.geojson``/``.parquet`` (one feature per window);
            the result Item is written beside it as ``<output stem>.json``.
        device: ``"cpu"`` or ``"cuda"``.
        bands: explicit band mapping ``{band name: "FILE[:INDEX]"}`` (or ``(file, index)``) for files whose
            bands cannot be told by name.
        resolution: the grid's pixel size in CRS units (default: the finest band's).
        crs: the grid's CRS (default: the data's).
        overwrite: replace existing outputs (else :class:`~mlm_export.errors.OutputExistsError`).
        trust_code: allow ``python`` expressions and the Item's recorded model class to be imported.
        model_class: class rebuilding a weights-only model.
        model_kwargs: keyword arguments of ``model_class``.
        max_dry_run_memory: memory cap (bytes or e.g. ``"2GB"``) that sizes dynamic tiles and batches.
        progress: a progress bar per batch (default: on a terminal).
        scores: also write the class scores of a class map (``<stem>-scores.tif``).
        tile_size: side of dynamic windows (default: from the memory cap).
        overlap: pixels of overlap per side of dense windows (default: 16, at most a quarter of the tile).
        trust_pickle: as for :func:`~mlm_export.load_model`.
        inputs: ``{input name: path or URL}`` of the Item's inputs that name no bands (a DEM, an auxiliary grid;
            ``--input NAME=PATH``): each file's bands are its channels, read onto the grid of DATA, nodata carried.
            The model gets every input in the Item's ``mlm:input`` order, each pre-processed by its own entry.
        verify: before reading any data, rerun the model on the Item's published example (asset ``known-answer``)
            and refuse (:class:`~mlm_export.errors.KnownAnswerMismatchError`) when it does not reproduce it.
        chunks: side (pixels) of the dask chunks the data is read in (default: the tile's). The data is always read
            lazily and the map written window by window, so memory does not grow with the scene.
        client: a ``dask.distributed.Client`` whose workers run the batches (each loads and verifies the model
            once); default: dask's local scheduler in this process. The result is the same bit for bit.
        window_size: side (pixels of the data grid) of the window each model input covers, when it differs from the
            input's height/width (or ``tile_size``): each window is resized to the input by the Item's
            ``resize_type`` (``interpolation-nearest``/``-linear``/``-cubic``/``-area``, after the band
            expressions and before ``value_scaling``) and a dense result back to the window (:mod:`.resize`);
            refused for other resize types. Default: the input's size (no resize).

    Returns:
        What was written, and the number of windows run and skipped (all nodata).

    Raises:
        MissingBandError: a band the model reads is not in the data.
        DataError: data without CRS, smaller than a fixed input, all nodata, or values outside the input type.
        UnsupportedExpressionError: an expression format that cannot be run; UntrustedCodeError: a ``python``
            expression or model class without ``trust_code``.
        OutputExistsError: an output exists and ``overwrite`` is False.

    .. versionadded:: 0.1
    """
    from mlm_export.loading import load_model_with_item
    from mlm_export.stac.bands import definition_aliases, required_bands

    target = resolve_output(output)
    sources = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    model, doc, _ = load_model_with_item(item, model_class=model_class, model_kwargs=model_kwargs,
                                         trust_pickle=trust_pickle, trust_code=trust_code, device=device,
                                         known_answer=verify)  # fmt: skip
    spec, out = input_spec(doc), output_spec(doc)
    _check_output(target, out.dense)
    for path in _outputs_of(target, out, scores):
        if path.exists() and not overwrite:
            raise exists_error(path, what="Output", flag="overwrite=True (--overwrite)")
    mapping = {k: _band_target(v) for k, v in (bands or {}).items()}
    read = {"bands": mapping, "resolution": resolution, "crs": crs}
    scene = read_scene(sources, required_bands(doc), definition_aliases(doc), chunks=chunks or lazy.DEFAULT_CHUNKS,
                       **read)  # fmt: skip
    specs = input_specs(doc)
    auxiliary = read_inputs(scene, specs, inputs or {})
    options = {"max_dry_run_memory": max_dry_run_memory, "tile_size": tile_size, "overlap": overlap,
               "window_size": window_size}  # fmt: skip
    plan = _plan(doc, spec, out, scene, options)
    if chunks is None and max(plan.tile) != lazy.DEFAULT_CHUNKS:  # chunks of the tile's size: less read per window
        scene = read_scene(sources, required_bands(doc), definition_aliases(doc), chunks=max(plan.tile), **read)
        auxiliary = read_inputs(scene, specs, inputs or {})  # their nodata into the new scene's valid mask
    source = lazy.model_source(item, doc, device, model_class=model_class, model_kwargs=model_kwargs,
                               trust_pickle=trust_pickle, trust_code=trust_code)  # fmt: skip
    feeds = tuple((s, auxiliary.get(s.name)) for s in specs) if len(specs) > 1 else ()
    job = lazy.Job(source, spec, out, tuple(scene.names), plan.tile, trust_code, feeds, plan.window)
    graph = lazy.build(job, scene.data, scene.valid, plan.windows, plan.batch)
    counter = _Counter(len(plan.windows), progress)
    lazy.remember(source, forward.prepare(model, device))
    try:
        written = _publish(target, doc, item, model, scene, out, plan, (graph, client, counter), scores, overwrite)
    finally:
        lazy.forget(source)
        counter.bar.close()
    return PredictionResult(target, target.with_suffix(".json"), written, counter.ran, counter.skipped)


def _band_target(value: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(value, tuple):
        return str(value[0]), int(value[1])
    return parse_band_mapping([f"band={value}"])["band"]


def _model_href(item: Any, doc: Mapping[str, Any]) -> str | None:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    links = [link.get("href") for link in doc.get("links") or [] if link.get("rel") == "self"]
    return str(links[0]) if links else None


def _publish(target: Path, doc: Mapping[str, Any], item: Any, model: Any, scene: Scene, out: OutputSpec,
             plan: _Plan, run: tuple[list[Any], Any, _Counter], scores: bool,
             overwrite: bool) -> tuple[Path, ...]:  # fmt: skip
    """Write every output and the result Item into a staging directory, then publish them (the Item last)."""
    from mlm_export.stac.writer import write_json_atomic

    with Staging(target.parent) as staging:
        stage = staging.path
        graph, client, counter = run
        if out.dense:
            files = _dense_writes(stage, target, scene, out, graph, client, counter, scores)
        else:
            pieces: list[lazy.Piece] = []
            lazy.execute(graph, client, lambda batch: (counter.count(batch), pieces.extend(batch)))
            kept = sorted((p for p in pieces if p.values is not None), key=lambda p: (p.window.row, p.window.col))
            if not kept:
                raise _no_data(scene)
            features = outputs.tile_features([p.window for p in kept], [p.values for p in kept], scene.transform,
                                             scene.crs, out.classes)  # fmt: skip
            outputs.write_features(stage / target.name, features, parquet=target.suffix.lower() == ".parquet")
            files = [OutputFile("data", stage / target.name, target.name, [], out.classes)]
        geometry, bbox = _scene_footprint(scene)
        document = result_item(target.stem, files, geometry=geometry, bbox=bbox, model_item=_model_href(item, doc),
                               data_items=scene.items, software=framework_versions(model),
                               datetime=_data_datetime(scene))  # fmt: skip
        published = staging.publish([f.name for f in files], overwrite=overwrite)
        write_json_atomic(document, target.with_suffix(".json"), overwrite=overwrite)
    return (*published, target.with_suffix(".json"))


def _data_datetime(scene: Scene) -> str | None:
    if not scene.items:
        return None
    import pystac

    value = pystac.Item.from_file(scene.items[0]).properties.get("datetime")
    return str(value) if value else None
