"""``predict`` as a lazy dask computation: two tasks per batch of windows, run locally or on a ``distributed.Client``.

The scene is read lazily (rioxarray / odc-stac with ``chunks``: dask arrays), so nothing holds it whole. The graph
(:func:`build`) has, per batch of windows (:func:`mlm_export.prediction.tiling.batches`, the same batches whatever
runs them), a ``prepared`` task that reads the windows' slices of the lazy bands and valid mask (dask reads only
those pixels, with its synchronous scheduler inside the task: a cluster's scheduler sees no chunk tasks) and
pre-processes them (:mod:`.preprocess`), skipping the all-nodata windows, and a ``result`` task that runs the
forward and returns each window's core (dense outputs: the centre-crop rule of :mod:`.tiling`) or vector.
:func:`execute` runs them a few at a time and hands each result to the writer, in a writer thread, as it comes
(:mod:`.outputs` writes a staged tiled GeoTIFF window by window, then the COG). In-process a reader thread reads and
pre-processes the next batch while the forward of this one runs (torch and numpy release the GIL); on a client the
workers run both tasks of a batch. Peak memory depends on the tile and batch size, never on the scene's size.

The model is loaded and verified once per process and device (:func:`cached_model`, keyed by the Item's model
checksum): the caller's process reuses the model ``predict`` loaded; each dask worker loads it on its first task.
Every path runs the same batches through the same code, so local and distributed results are equal bit for bit
(on CPU, as torch is for the same inputs).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from mlm_export.prediction import forward, preprocess, resize, tiling
from mlm_export.prediction.expressions import evaluate
from mlm_export.prediction.spec import InputSpec, OutputSpec

#: Side (pixels) of the dask chunks the data is read in, when ``chunks`` is not given.
DEFAULT_CHUNKS = 512
#: Batches in flight per worker (local: per process) while results stream to the writer.
IN_FLIGHT_PER_WORKER = 2
#: Batches read and pre-processed ahead (in a thread) while the forward of the current one runs, in-process.
READ_AHEAD = 1
#: Bytes of GDAL's block cache while this process reads and writes windows: the chunks neighbouring batches share
#: stay decoded, and memory does not grow with the scene.
READ_CACHE = 64 * 2**20

_MODELS: dict[tuple[str, str], Any] = {}
_LOADS: dict[tuple[str, str], int] = {}


@dataclass(frozen=True)
class ModelSource:
    """How a process loads the model (as :func:`~mlm_export.loading.load_model_with_item` does), and its cache key."""

    item: Any  # a path/URL string or the Item's JSON dict
    key: str
    device: str
    model_class: Any = None
    model_kwargs: Mapping[str, Any] | None = None
    trust_pickle: bool = False
    trust_code: bool = False


def model_key(document: Mapping[str, Any]) -> str:
    """The cache key of an Item's model: the ``file:checksum`` of its ``mlm:model`` assets (else the Item's hash)."""
    assets = document.get("assets") or {}
    sums = sorted(str(a.get("file:checksum")) for a in assets.values() if "mlm:model" in (a.get("roles") or []))
    if sums and "None" not in sums:
        return ",".join(sums)
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def model_source(item: Any, document: Mapping[str, Any], device: str, **options: Any) -> ModelSource:
    """A picklable :class:`ModelSource` for ``item`` (paths/URLs as strings, anything else as the Item's dict)."""
    where = str(item) if isinstance(item, (str, os.PathLike)) else dict(document)
    return ModelSource(where, model_key(document), str(device), **options)


def remember(source: ModelSource, model: Any) -> None:
    """Put a model this process already loaded (and verified) in the cache."""
    _MODELS[(source.key, source.device)] = model


def cached_model(source: ModelSource) -> Any:
    """The model of ``source``, loaded and verified once per process and device."""
    slot = (source.key, source.device)
    if slot not in _MODELS:
        from mlm_export.loading import load_model_with_item

        model, _, _ = load_model_with_item(source.item, model_class=source.model_class,
                                           model_kwargs=source.model_kwargs, trust_pickle=source.trust_pickle,
                                           trust_code=source.trust_code, device=source.device)  # fmt: skip
        _MODELS[slot] = forward.prepare(model, source.device)
        _LOADS[slot] = _LOADS.get(slot, 0) + 1
    return _MODELS[slot]


def loads() -> dict[str, int]:
    """How many times this process loaded each model (``"checksum@device"`` -> count); for tests and benchmarks."""
    return {f"{key}@{device}": count for (key, device), count in _LOADS.items()}


@dataclass(frozen=True)
class Job:
    """What every batch task needs besides its pixels."""

    source: ModelSource
    spec: InputSpec
    out: OutputSpec
    names: tuple[str, ...]
    tile: tuple[int, int]
    trust_code: bool
    #: Every input in the Item's order when there are several: ``(spec, None)`` reads its bands from DATA,
    #: ``(spec, planes [C, H, W])`` an input without bands (``inputs=``) on the scene's grid. Empty: ``spec`` alone.
    inputs: tuple[tuple[InputSpec, np.ndarray | None], ...] = ()
    #: The windows' size on the data grid when it differs from ``tile`` (resized by ``resize_type``: :mod:`.resize`).
    window: tuple[int, int] | None = None


@dataclass(frozen=True)
class Piece:
    """One window's result: its dense core [K, h, w] (with the core's valid mask) or its vector; None if skipped."""

    window: tiling.Window
    values: np.ndarray | None
    valid: np.ndarray | None = None


def post_process(out: OutputSpec, result: np.ndarray, trust_code: bool) -> np.ndarray:
    """``post_processing_function`` of the output, in order."""
    for index, expression in enumerate(out.post_processing):
        where = f"post_processing_function[{index}] of output {out.name!r}"
        result = np.asarray(evaluate(expression, {"x": result, "A": result}, trust_code=trust_code, where=where))
    return result


def canonical(out: OutputSpec, result: np.ndarray) -> np.ndarray:
    """A dense result as [B, K, H, W] whatever its declared dim_order."""
    dims = list(out.dim_order)
    if result.ndim == len(dims) - 1 and "batch" not in dims:
        result, dims = result[None], ["batch", *dims]
    rest = [i for i, d in enumerate(dims) if d not in ("batch", "height", "width")]
    axes = [dims.index("batch"), *rest, dims.index("height"), dims.index("width")]
    result = np.transpose(result, axes)
    return result.reshape(result.shape[0], -1, *result.shape[-2:])


def prepare_batch(job: Job, group: Sequence[tiling.Window], parts: Sequence[np.ndarray],
                  valids: Sequence[np.ndarray]) -> tuple[list[int], Any]:  # fmt: skip
    """The windows of ``group`` that hold data, and the model's arguments for them (pre-processed, in dim_order)."""
    kept = [i for i, valid in enumerate(valids) if valid.any()]
    if not kept:
        return kept, None
    if job.window is not None:  # resize_type: each window resized to the input (steps 1-5 around the resize)
        space = partial(resize.model_space, window=job.window, tile=job.tile)
        planes = [space(job.spec, job.names, np.asarray(parts[i]), np.asarray(valids[i]), trust_code=job.trust_code)
                  for i in kept]  # fmt: skip
        batch = preprocess.finish_batch(job.spec, np.stack([preprocess.pad(p, job.tile) for p in planes]),
                                        trust_code=job.trust_code)  # fmt: skip
    else:
        batch = preprocess.batch(job.spec, job.names, [parts[i] for i in kept], [valids[i] for i in kept], job.tile,
                                 trust_code=job.trust_code)  # fmt: skip
    main = np.transpose(batch, list(np.argsort(job.spec.order)))
    return kept, _feed(job, [group[i] for i in kept], [parts[i] for i in kept], [valids[i] for i in kept], main)


def run_batch(job: Job, group: Sequence[tiling.Window], parts: Sequence[np.ndarray], valids: Sequence[np.ndarray],
              prepared: tuple[list[int], Any] | None = None) -> list[Piece]:  # fmt: skip
    """Pre-process (unless ``prepared`` by :func:`prepare_batch`), forward and cut one batch of windows.

    ``parts``: the windows' raw bands, clipped to the scene; ``valids``: their valid masks.
    """
    kept, fed = prepared if prepared is not None else prepare_batch(job, group, parts, valids)
    pieces = [Piece(w, None) for w in group]
    if not kept:
        return pieces
    model = cached_model(job.source)
    result = post_process(job.out, forward.run(model, fed, job.source.device), job.trust_code)
    if not job.out.dense:
        for i, one in zip(kept, result, strict=True):
            pieces[i] = Piece(group[i], np.asarray(one))
        return pieces
    result = canonical(job.out, result)
    factor = tiling.output_factor(result.shape[-2:], job.tile, job.out.name)  # k > 1: super-resolution
    if job.window is not None:
        result = resize.to_window(result, job.tile, job.window, str(job.spec.resize_type))
    for i, one in zip(kept, result, strict=True):
        pieces[i] = Piece(group[i], *tiling.fine_core(one, valids[i], group[i], factor))
    return pieces


def _feed(job: Job, windows: Sequence[tiling.Window], parts: Sequence[np.ndarray], valids: Sequence[np.ndarray],
          main: np.ndarray) -> np.ndarray | list[np.ndarray]:  # fmt: skip
    """The model's arguments: ``main`` alone, or one batch per input in the Item's order (see :attr:`Job.inputs`)."""
    if not job.inputs:
        return main
    batches = []
    for spec, planes in job.inputs:
        if spec == job.spec:
            batches.append(main)
            continue
        cuts = [np.asarray(p) for p in parts]
        if planes is not None:  # an input without bands: the same windows of its planes, clipped like the bands'
            cuts = [planes[:, rows, cols] for rows, cols in (_slices(w, planes.shape[1:]) for w in windows)]
        names = () if planes is not None else job.names
        batch = preprocess.batch(spec, names, cuts, valids, job.tile, trust_code=job.trust_code)
        batches.append(np.transpose(batch, list(np.argsort(spec.order))))
    return batches


def _slices(window: tiling.Window, shape: tuple[int, int]) -> tuple[slice, slice]:
    return (slice(window.row, min(window.row + window.height, shape[0])),
            slice(window.col, min(window.col + window.width, shape[1])))  # fmt: skip


class _Reads:
    """The lazy window slices of one batch (bands, then valid masks), read where the batch runs, in that one task.

    Read there with dask's synchronous scheduler, so a cluster's scheduler sees one task per batch step, not the
    hundreds of chunk tasks of its slices; pickled (for a worker) with the slices' graph culled to their chunks.
    """

    def __init__(self, arrays: Sequence[Any]) -> None:
        self.arrays = list(arrays)

    def __reduce__(self) -> tuple[Any, ...]:
        import dask

        return _Reads, (list(dask.optimize(*self.arrays)),)

    def load(self) -> list[np.ndarray]:
        import dask

        return [np.asarray(a) for a in dask.compute(*self.arrays, scheduler="sync", optimize_graph=True)]


def _prepare_reads(job: Job, group: Sequence[tiling.Window],
                   reads: _Reads) -> tuple[list[np.ndarray], tuple[list[int], Any]]:  # fmt: skip
    """Read the batch's windows, then :func:`prepare_batch` (the valid masks are kept for the cut)."""
    arrays = reads.load()
    parts, valids = arrays[: len(group)], arrays[len(group) :]
    return valids, prepare_batch(job, group, parts, valids)


def _run_prepared(job: Job, group: Sequence[tiling.Window], prepared: tuple[list[np.ndarray], Any]) -> list[Piece]:
    valids, ready = prepared
    return run_batch(job, group, (), valids, ready)


@dataclass(frozen=True)
class Batch:
    """One batch of windows as two lazy steps: read + pre-process (``prepared``), then forward + cut (``result``)."""

    job: Job
    group: list[tiling.Window]
    prepared: Any  # dask.delayed.Delayed -> (valid masks, prepare_batch's result)
    result: Any  # dask.delayed.Delayed -> list[Piece]


def build(job: Job, data: Any, valid: Any, windows: Sequence[tiling.Window], batch: int) -> list[Batch]:
    """The lazy graph: two tasks per batch of ``windows``, over the windows' slices of the lazy ``data``/``valid``.

    Each step is a :class:`dask.delayed.Delayed` whose graph holds only the slices' layers (no per-chunk graph is
    built here, so planning a scene of any size takes milliseconds per window).
    """
    from dask.base import tokenize
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    shape = tuple(valid.shape)
    graph = []
    for group in tiling.batches(windows, batch):
        cuts = [_slices(w, shape) for w in group]
        parts = [data[:, rows, cols] for rows, cols in cuts]
        valids = [valid[rows, cols] for rows, cols in cuts]
        token = tokenize(job.source.key, group, [p.name for p in parts], [v.name for v in valids])
        name = f"predict-prepare-{token}"
        task = (_prepare_reads, job, group, _Reads([*parts, *valids]))
        prepared = Delayed(name, HighLevelGraph.from_collections(name, {name: task}, dependencies=[]))
        run = f"predict-batch-{token}"
        layers = HighLevelGraph.from_collections(run, {run: (_run_prepared, job, group, name)}, dependencies=[prepared])
        graph.append(Batch(job, group, prepared, Delayed(run, layers)))
    return graph


def _local(graph: Sequence[Batch]) -> Iterator[list[Piece]]:
    """The batches in order; a thread reads and pre-processes the next one while this one runs the forward."""
    from concurrent.futures import ThreadPoolExecutor

    import dask

    def read(batch: Batch) -> Any:
        (prepared,) = dask.compute(batch.prepared, scheduler="sync", optimize_graph=True)
        return prepared

    pool = ThreadPoolExecutor(1, thread_name_prefix="predict-read")
    try:
        ahead = [pool.submit(read, b) for b in graph[:READ_AHEAD]]
        for index, batch in enumerate(graph):
            prepared = ahead.pop(0).result()
            if index + READ_AHEAD < len(graph):
                ahead.append(pool.submit(read, graph[index + READ_AHEAD]))
            yield _run_prepared(batch.job, batch.group, prepared)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _distributed(graph: Sequence[Batch], client: Any) -> Iterator[list[Piece]]:
    from distributed import as_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    pending = iter(graph)
    first = [client.compute(b.result) for b in _take(pending, workers * IN_FLIGHT_PER_WORKER)]
    done = as_completed(first)
    for future in done:
        pieces = future.result()
        future.release()
        for batch in _take(pending, 1):
            done.add(client.compute(batch.result))
        yield pieces


def _take(items: Iterator[Any], count: int) -> list[Any]:
    out = []
    for _ in range(count):
        try:
            out.append(next(items))
        except StopIteration:
            break
    return out


def execute(graph: Sequence[Batch], client: Any, consume: Callable[[list[Piece]], None]) -> None:
    """Run the graph (on ``client``'s workers, else dask's local scheduler), handing each batch's pieces on.

    ``consume`` runs in a writer thread, one batch at a time and in the order the batches come back, while the next
    batch runs; its error is raised here.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    import rasterio

    writer = ThreadPoolExecutor(1, thread_name_prefix="predict-write")
    pending: Future[None] | None = None
    results = _distributed(graph, client) if client is not None else _local(graph)
    with rasterio.Env(GDAL_CACHEMAX=READ_CACHE):  # GDAL's default (5 % of RAM) would keep the whole scene's blocks
        try:
            for pieces in results:
                if pending is not None:
                    pending.result()
                pending = writer.submit(consume, pieces)
            if pending is not None:
                pending.result()
        finally:
            results.close()  # the reader thread stops before this returns or raises
            writer.shutdown(wait=True, cancel_futures=True)


def forget(source: ModelSource) -> None:
    """Drop a model :func:`remember` put in this process's cache (the caller's, once ``predict`` is done)."""
    _MODELS.pop((source.key, source.device), None)


def forget_all() -> None:
    """Empty this process's model cache and its load counts (benchmarks: each measured run loads the model again)."""
    _MODELS.clear()
    _LOADS.clear()
