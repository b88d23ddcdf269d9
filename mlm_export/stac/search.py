"""One search over model Items, two backends with the same answers: local files (embedded) or a STAC API.

:func:`search` takes a catalog directory, a Collection/Catalog file or object, or a list of Item files (the
embedded backend: no server, the Items stay JSON, read as they are; a folder or catalog through its index,
:mod:`mlm_export.stac.index`, so that only the Items it cannot rule out are read) **or** the URL of a STAC API
(searched with pystac-client, see :mod:`mlm_export.stac.search_api`). Both backends run the same matching and
ranking code (:mod:`mlm_export.stac.matching`, whose docstring gives the rules and the specificity score) on each
Item, so the same Items give the same hits in the same order. ``filter=`` is CQL2 (text or JSON) evaluated
in-process with the ``cql2`` package on the whole Item (``"mlm:input.0.input.shape.1" = 13`` reaches into arrays of
objects); an Item that lacks a property the filter reads does not match.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pystac

from mlm_export.errors import ConfigurationError
from mlm_export.stac.entries import Entry, is_url, search_entries
from mlm_export.stac.index_folders import FRESHNESS
from mlm_export.stac.matching import Query, SearchHit, match, parse_query

__all__ = ["SearchHit", "format_hits", "search", "search_catalog"]

SearchSource = str | os.PathLike[str] | pystac.Catalog | Sequence[Any]


def rank(hits: list[SearchHit], limit: int | None = None) -> list[SearchHit]:
    """``hits`` sorted by score (highest first), then id and href; the first ``limit`` of them."""
    ranked = sorted(hits, key=lambda h: (-h.score, h.id, h.href or ""))
    return ranked if limit is None else ranked[:limit]


def _check_limit(limit: Any, name: str = "limit", kind: type | tuple[type, ...] = int) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, kind) or not limit > 0):
        what = "a positive integer" if kind is int else "a positive number"
        raise ConfigurationError(f"{name}: expected {what}, got {limit!r}.")


def search(
    source: SearchSource,
    *,
    bbox: Sequence[float] | None = None,
    datetime: str | dt.datetime | tuple[Any, Any] | None = None,
    tasks: Sequence[str] | str | None = None,
    bands: Sequence[str] | str | None = None,
    framework: str | None = None,
    input_channels: int | None = None,
    filter: str | Mapping[str, Any] | None = None,  # the STAC API name
    limit: int | None = None,
    collections: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_pages: int | None = None,
    max_items: int | None = None,
    max_time: float | None = None,
    freshness: str = "full",
) -> list[SearchHit]:
    """Find the models that fit the query, most specific first.

    Every given criterion must hold; hits are ranked by the specificity score (see
    :mod:`mlm_export.stac.matching`). "A model for my Sentinel-2 tile":
    ``search(dir, bbox=[w, s, e, n], bands=["B02", "B03", "B04", "B08"])``.

    Args:
        source: a catalog directory (with ``collection.json`` or ``catalog.json``), a folder of Item files (every
            ``*.json`` below it; other JSON is skipped with a warning), the path of a Collection or Catalog JSON file, a
            ``pystac.Catalog``, a list of Item files / dicts / ``pystac.Item`` objects, or the ``http(s)`` URL of a
            STAC API (every hit of the server is paged through before ranking, within the bounds below).
        bbox: ``[west, south, east, north]`` in degrees; the model's bbox must intersect it (edge contact is no
            match; west > east crosses the antimeridian).
        datetime: an instant (``2020-06-01T00:00:00Z``; a date, month or year stands for the whole period), or an
            interval ``"start/end"`` with ``..`` for an open end; the model's time range must overlap it.
        tasks: MLM task(s) the model must answer, each; a generic task also matches its specific forms
            (``segmentation`` matches ``semantic-segmentation``).
        bands: the band names you have; the model must read at least one band and only bands among them
            (case-insensitive, ``B4`` = ``B04``, common names such as ``red`` both ways, via the item's band
            definitions or the Sentinel-2 / Landsat 8/9 table of :mod:`mlm_export.stac.bands`; computed bands count
            as the bands their expression reads).
        framework: ``mlm:framework`` of the item or an asset, ignoring case, spaces and punctuation.
        input_channels: the size of the ``bands``/``channel`` dimension of one of the model's inputs.
        filter: a CQL2 expression (text, or cql2-json as a string or dict) on any Item field.
        limit: return at most this many hits (after ranking).
        collections: STAC API only: search these collections (default: all).
        headers: STAC API only: HTTP headers (e.g. ``Authorization``); never printed, and sent only to the origin
            (scheme, host, port) of the URL: a ``search``/``next`` link or a redirect elsewhere gets none of them.
        max_pages: STAC API only: read at most this many pages of hits (default 200).
        max_items: STAC API only: read at most this many Items (default 20,000).
        max_time: STAC API only: seconds the whole search may take (default 300; each request also times out
            after 60 s without an answer).
        freshness: a folder of Items only: how its index is checked against the files. ``"full"`` (default) stats
            every file; ``"folders"`` stats its folders and the candidates only (cost independent of the folder's
            size), missing in-place edits of non-candidate files (see :mod:`mlm_export.stac.index_folders`).

    Returns:
        The matching models, highest score first, then by id.

    Raises:
        ConfigurationError: an invalid argument (named in the message; a CQL2 error points at the position), a
            directory that holds no model Item, or a file that is not STAC.
        SearchLimitError: the STAC API has more pages or Items than the bounds, or the search took too long (the
            message names the bound and its argument).
        STACAPIError: the STAC API cannot be reached or answers with an error.

    .. versionadded:: 0.2
    """
    _check_limit(limit)
    bounds = {"max_pages": max_pages, "max_items": max_items, "max_time": max_time}
    for name, value in bounds.items():
        _check_limit(value, name, (int, float) if name == "max_time" else int)
    if freshness not in FRESHNESS:
        raise ConfigurationError(f"freshness: expected one of {FRESHNESS}, got {freshness!r}.", hint="Use 'full'.")
    query = parse_query(bbox, datetime, tasks, bands, framework, input_channels, filter)
    bounds = {k: v for k, v in bounds.items() if v is not None}
    entries = _candidates(source, query, collections, headers, bounds, freshness)
    return rank([hit for entry in entries if (hit := match(entry, query)) is not None], limit)


def _candidates(
    source: SearchSource,
    query: Query,
    collections: Sequence[str] | None,
    headers: Mapping[str, str] | None,
    bounds: dict[str, Any],
    freshness: str = "full",
) -> Iterable[Entry]:
    """The Items to match: the STAC API's hits for ``query`` (streamed page by page), else every Item of ``source``.

    Raises:
        ConfigurationError: ``collections``, ``headers`` or a ``max_*`` bound given for a local source.
    """
    if isinstance(source, str) and is_url(source):
        from mlm_export.stac.search_api import api_entries

        return api_entries(source, query, collections=collections, headers=headers, **bounds)
    if collections is not None or headers is not None or bounds:
        raise ConfigurationError(
            "collections/headers/max_pages/max_items/max_time apply to a STAC API URL only.",
            hint="Drop them for a local catalog.",
        )
    return search_entries(source, query, freshness)


def search_catalog(
    directory_or_collection: str | os.PathLike[str] | pystac.Catalog,
    *,
    bbox: Sequence[float] | None = None,
    datetime: str | dt.datetime | tuple[Any, Any] | None = None,
    task: str | None = None,
    bands: Sequence[str] | str | None = None,
    framework: str | None = None,
    input_channels: int | None = None,
) -> list[SearchHit]:
    """Find the models of a local catalog that fit the query: :func:`search` with one ``task``.

    .. versionadded:: 0.1
    """
    return search(
        directory_or_collection,
        bbox=bbox,
        datetime=datetime,
        tasks=None if task is None else [task],
        bands=bands,
        framework=framework,
        input_channels=input_channels,
    )


def format_hits(hits: Sequence[SearchHit]) -> str:
    """A plain-text table of ``hits`` (rank, score, id, name, tasks, framework, path), each followed by its reasons.

    .. versionadded:: 0.1
    """
    if not hits:
        return "No model matches."
    header = ("#", "score", "id", "name", "tasks", "framework", "path")
    rows = [
        (str(rank), f"{hit.score:.3g}", hit.id, hit.name or "-", ",".join(hit.tasks) or "-", hit.framework or "-",
         hit.href or "-")
        for rank, hit in enumerate(hits, 1)
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    lines = [line(header), line(["-" * w for w in widths])]
    indent = " " * (widths[0] + 2)
    for row, hit in zip(rows, hits, strict=True):
        lines.append(line(row))
        lines += [f"{indent}{reason}" for reason in hit.reasons]
    return "\n".join(lines)
