"""A self-contained STAC Collection of model Items: extent and MLM summaries, written as a catalog directory.

Layout written by :func:`build_catalog`::

    DIR/collection.json            the Collection: extent, summaries, one ``item`` link per model
    DIR/<item id>/<item id>.json   one Item per model (the pystac "best practices" layout)
    DIR/.mlm-index.sqlite          the search index (:mod:`mlm_export.stac.index`), refreshed by every search

Every href between these files is relative (``catalog_type=SELF_CONTAINED``: no ``self`` links), so the directory
can be moved or published as is. Local asset hrefs are rewritten relative to the Item's new location; URLs stay.

**Summaries.** MLM v1.5.2 validates *each* ``summaries`` value of a Collection that declares MLM as an object of
MLM fields, so the usual arrays of values (``{"mlm:tasks": ["classification"]}``) fail. STAC allows two other
summary forms, both objects, and both pass: a JSON Schema (used here with ``enum`` for sets of values) and a Range
(``{"minimum", "maximum"}`` for numbers). The Collection therefore declares MLM and summarizes ``mlm:tasks``,
``mlm:framework``, ``mlm:architecture`` and ``mlm:accelerator`` as JSON Schemas, ``mlm:total_parameters`` and
``mlm:memory_size`` as Ranges, and the input band names as a JSON Schema of STAC 1.1 ``bands``.
:func:`collection_document` is also what :func:`mlm_export.stac.publish.publish` sends to a STAC API.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pystac
from pystac.utils import datetime_to_str, make_absolute_href
from shapely.ops import unary_union

from mlm_export.errors import ConfigurationError, ItemValidationError, OutputError, OutputExistsError
from mlm_export.provenance.revisions import VERSION_RELS
from mlm_export.stac.bands import input_band_names
from mlm_export.stac.builder import MLM_SCHEMA_URI
from mlm_export.stac.entries import COLLECTION_FILE, Entry, ItemSource, index_catalog, is_url, read_entry
from mlm_export.stac.io import decode_href
from mlm_export.stac.placement import (
    Artifact,
    ItemArtifacts,
    Publication,
    choose_places,
    collect_artifacts,
    publish_file,
    stage,
)
from mlm_export.stac.spacetime import footprint_of, item_bbox, item_interval
from mlm_export.stac.writer import item_to_json_dict, json_text

if TYPE_CHECKING:
    from mlm_export.stac.validate import ValidationReport

logger = logging.getLogger(__name__)
_STRUCTURAL_RELS = {"self", "root", "parent", "collection"}
_BAD_ID = re.compile(r"[/\\\x00]|^\.|^$")


def _enum_schema(values: Iterable[Any], *, array: bool = False) -> dict[str, Any]:
    present = {v for v in values}
    ordered = sorted((v for v in present if v is not None), key=lambda v: str(v).lower())
    types = sorted({"boolean" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "string"
                    for v in ordered})  # fmt: skip
    if None in present:
        ordered.append(None)
        types.append("null")
    schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types, "enum": ordered}
    return {"type": "array", "items": schema} if array else schema


def _summaries(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Collection summaries, each an object (JSON Schema or Range) so that they pass MLM's Collection rule."""
    props = [d.get("properties") or {} for d in documents]
    summaries: dict[str, Any] = {}
    tasks = [t for p in props for t in p.get("mlm:tasks") or [] if isinstance(t, str)]
    if tasks:
        summaries["mlm:tasks"] = _enum_schema(tasks, array=True)
    for key in ("mlm:framework", "mlm:architecture"):
        values = [p[key] for p in props if isinstance(p.get(key), str)]
        if values:
            summaries[key] = _enum_schema(values)
    # A missing mlm:accelerator means null (any accelerator, none required).
    summaries["mlm:accelerator"] = _enum_schema(p.get("mlm:accelerator") for p in props)
    for key in ("mlm:total_parameters", "mlm:memory_size"):
        numbers = [p[key] for p in props if isinstance(p.get(key), int) and not isinstance(p.get(key), bool)]
        if numbers:
            summaries[key] = {"minimum": min(numbers), "maximum": max(numbers)}
    bands = sorted({name for d in documents for name in input_band_names(d)})
    if bands:
        name_schema = {"type": "string", "enum": bands}
        summaries["bands"] = {"type": "array", "items": {"type": "object", "properties": {"name": name_schema}}}
    return summaries


def _extent(entries: list[Entry]) -> dict[str, Any]:
    footprints = []
    for entry in entries:
        bbox, note = item_bbox(entry.document, entry.source)
        if note:
            warnings.warn(note, stacklevel=4)  # build_catalog's caller
        if bbox is not None:
            footprints.append(footprint_of(bbox))
    bounds = list(unary_union(footprints).bounds) if footprints else [-180.0, -90.0, 180.0, 90.0]
    intervals = [item_interval(e.document, e.source) for e in entries]
    starts = [s for s, _ in intervals]
    ends = [e for _, e in intervals]
    start = None if not starts or any(s is None for s in starts) else min(s for s in starts if s is not None)
    end = None if not ends or any(e is None for e in ends) else max(e for e in ends if e is not None)
    return {
        "spatial": {"bbox": [bounds]},
        "temporal": {"interval": [[datetime_to_str(start) if start else None, datetime_to_str(end) if end else None]]},
    }


def _absolute_href(href: Any, base: Path | None, where: str) -> str:
    """``href`` made absolute against ``base``; URLs and absolute paths are kept."""
    if not isinstance(href, str) or not href:
        raise ConfigurationError(f"{where} has no href (got {href!r}).", hint="Every asset and link needs an href.")
    if is_url(href) or urlparse(href).scheme == "file" or os.path.isabs(href):
        return href
    if base is None:
        raise ConfigurationError(
            f"{where} has the relative href {href!r} but the item has no location to resolve it against.",
            hint="Pass the item as a file path (or a pystac.Item with a self href), or make the href absolute.",
        )
    return os.path.realpath(make_absolute_href(decode_href(href), str(base / "item.json")))  # a raw path


def _member_paths(entries: list[Entry]) -> dict[str, str]:
    """The real path of each Item file of the catalog -> the Item's id."""
    return {os.path.realpath(e.href): e.document["id"] for e in entries if e.href and not is_url(e.href)}


def _catalog_link(link: dict[str, Any], members: Mapping[str, str], where: str) -> dict[str, Any] | None:
    """A link (its href made absolute) as the catalog keeps it.

    A local link to another Item of the catalog points at that Item's catalog file (``../<id>/<id>.json``); a
    version link to a local Item left out of the catalog is dropped with a warning (its target would not move with
    the catalog, nor be published under its ``href_base``); other links keep their (absolute, then relative) href.
    """
    href = link["href"]
    if is_url(href):
        return link
    # a relative href arrives as a raw path (see _absolute_href); an absolute one as written (percent-encoded)
    paths = {os.path.realpath(href), os.path.realpath(decode_href(href))} if urlparse(href).scheme != "file" else set()
    target = next((members[p] for p in paths if p in members), None)
    if target is not None:
        return {**link, "href": f"../{target}/{target}.json"}
    if link.get("rel") in VERSION_RELS:
        logger.warning(
            "%s: the %s link to '%s' is left out: that Item is not in the catalog (add it to the catalog's Items "
            "to keep the link).", where, link.get("rel"), href,
        )  # fmt: skip
        return None
    return link


def _catalog_item(
    entry: Entry,
    collection_id: str,
    collection_title: str | None,
    allow_outside: Sequence[Any],
    members: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], ItemArtifacts]:
    """The item document for the catalog and its local artifacts (their hrefs set once their place is chosen).

    Structural links are replaced, links between the catalog's Items (``members``: real path -> id) point at
    their catalog files, other local link hrefs are made absolute, ``collection`` is set.
    """
    document = dict(entry.document)
    item_id = document["id"]
    where = f"{entry.source} (item {item_id!r})"
    assets = {key: dict(asset) if isinstance(asset, Mapping) else asset
              for key, asset in (document.get("assets") or {}).items()}  # fmt: skip
    confined = entry.href is not None and entry.base is not None
    artifacts = collect_artifacts(item_id, assets, entry.base, confined, allow_outside, where)
    document["assets"] = assets
    links: list[dict[str, Any]] = []
    for link in document.get("links") or []:
        if not isinstance(link, Mapping) or link.get("rel") in _STRUCTURAL_RELS:
            continue
        link = dict(link)
        link["href"] = _absolute_href(link.get("href"), entry.base, f"{where} link rel={link.get('rel')!r}")
        kept = _catalog_link(link, members or {}, where)
        if kept is not None:
            links.append(kept)
    parent = {"href": f"../{COLLECTION_FILE}", "type": "application/json"}
    if collection_title:
        parent["title"] = collection_title
    links[:0] = [{"rel": rel, **parent} for rel in ("root", "parent", "collection")]
    document["links"] = links
    document["collection"] = collection_id
    return document, artifacts


def _set_artifact_hrefs(document: dict[str, Any], artifacts: ItemArtifacts) -> None:
    for artifact in artifacts.artifacts:
        for key in artifact.keys:
            document["assets"][key]["href"] = artifacts.href(artifact)


def _item_title(document: Mapping[str, Any]) -> str | None:
    props = document.get("properties") or {}
    title = props.get("title") or props.get("mlm:name")
    return title if isinstance(title, str) else None


def collection_document(
    entries: list[Entry], collection_id: str, title: str | None, description: str | None
) -> dict[str, Any]:
    """The Collection of ``entries``: extent, MLM summaries, and an ``item`` link per Item (catalog layout)."""
    documents = [e.document for e in entries]
    licenses = {(d.get("properties") or {}).get("license") for d in documents}
    license_ = licenses.pop() if len(licenses) == 1 and isinstance(next(iter(licenses)), str) else "other"
    collection: dict[str, Any] = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [MLM_SCHEMA_URI],
        "id": collection_id,
        **({"title": title} if title else {}),
        "description": description
        or f"{len(entries)} machine-learning model(s) described with the STAC MLM extension.",
        "license": license_,
        "extent": _extent(entries),
        "summaries": _summaries(documents),
        "links": [{"rel": "root", "href": f"./{COLLECTION_FILE}", "type": "application/json"}],
    }
    if title:
        collection["links"][0]["title"] = title
    for entry in entries:
        item_id = entry.document["id"]
        link = {"rel": "item", "href": f"./{item_id}/{item_id}.json", "type": "application/geo+json"}
        if _item_title(entry.document):
            link["title"] = _item_title(entry.document)
        collection["links"].append(link)
    return collection


def raise_invalid(report: ValidationReport, what: str, consequence: str = "Nothing was written.") -> None:
    """Raise :class:`ItemValidationError` naming ``what`` and its first problem unless ``report`` is valid."""
    if report.valid:
        return
    more = f" (and {len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""
    raise ItemValidationError(
        f"{what} is invalid: {report.problems[0]}{more}. {consequence}",
        problems=list(report.problems),
        hint="Fix the item (see mlm-export validate).",
    )


def _prepare_directory(directory: Path, targets: list[Path], overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"Catalog directory '{directory}' is a file.", hint="Choose a directory path.")
    if not overwrite:
        for target in targets:
            if target.exists():
                raise OutputExistsError(
                    f"'{target}' already exists; the catalog was not written.",
                    hint="Pass overwrite=True (--overwrite) to replace it, or choose another directory.",
                )
    for target in targets:
        if target.is_dir() or (target.parent != directory and target.parent.exists() and not target.parent.is_dir()):
            raise OutputError(f"Cannot write '{target}': a directory or file is in the way.", hint="Remove it.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the catalog directory '{directory}': {exc.strerror}.", hint="Choose a writable path."
        ) from exc


def _read_entries(items: Iterable[ItemSource] | ItemSource) -> list[Entry]:
    """The entries of ``items``, refusing none, duplicate ids and ids that cannot be directory names."""
    if isinstance(items, (str, os.PathLike, Mapping, pystac.Item)):
        items = [items]
    entries = [read_entry(item) for item in items]
    if not entries:
        raise ConfigurationError("items: no items were given; a catalog needs at least one model Item.")
    seen: dict[str, str] = {}
    for entry in entries:
        item_id = entry.document["id"]
        if _BAD_ID.search(item_id) or item_id in (".", ".."):
            raise ConfigurationError(
                f"{entry.source}: item id {item_id!r} cannot be used as a directory name.",
                hint="Use an id without '/', '\\' or a leading '.'.",
            )
        if item_id in seen:
            raise ConfigurationError(
                f"items: {seen[item_id]} and {entry.source} have the same id {item_id!r}; ids must be unique.",
                hint="Give one of them another id.",
            )
        seen[item_id] = entry.source
    return entries


def build_catalog(
    items: Iterable[ItemSource],
    directory: str | os.PathLike[str],
    *,
    collection_id: str = "mlm-models",
    title: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
) -> pystac.Collection:
    """Write a self-contained STAC Collection of model Items to ``directory``.

    Writes ``directory/collection.json`` and ``directory/<item id>/<item id>.json`` for each item, all hrefs
    relative, and places every local artifact of an item next to it (``directory/<item id>/<file>``, hard-linked
    when on the same filesystem, else copied, verified against ``file:size``/``file:checksum``; see
    :mod:`mlm_export.stac.placement`), so that every catalog Item validates with its files inside its directory.
    URLs are kept. Files are first written to a temporary directory inside ``directory``; artifacts are published
    without ever replacing an existing file (a different file of the same name sends the item's artifacts to a
    ``<12 hex>/`` subdirectory), then Items, ``collection.json`` last, so that no reader sees a collection linking
    a missing item. Items and artifacts of an earlier catalog in ``directory`` stay on disk. Last, the search index
    ``directory/.mlm-index.sqlite`` is written (see :mod:`mlm_export.stac.index`; skipped when it cannot be).

    Args:
        items: model Items as ``pystac.Item`` objects, dicts or paths of Item JSON files. Relative hrefs in a dict
            cannot be resolved; give a path instead.
        directory: the catalog directory (created if missing).
        collection_id: the Collection id (also written as each item's ``collection``).
        title: the Collection title.
        description: the Collection description; defaults to a sentence with the number of models.
        overwrite: replace an existing ``collection.json`` and item files.
        validate: validate every item and the Collection before writing anything (artifact files are verified
            against ``file:size``/``file:checksum`` in any case).
        schema_dir: offline schema directory (see :func:`mlm_export.validate_item`).
        allow_outside: directories besides each item's own that its local hrefs may point into (same meaning as
            :func:`mlm_export.validate_item`'s); a local href elsewhere is refused and its file never read.

    Returns:
        The Collection read back from the written ``collection.json``; ``get_self_href()`` is its path and its
        items load from the written files.

    Raises:
        ConfigurationError: no items, an input that is not a model Item, duplicate item ids, an id that cannot be
            a directory name, or a relative href that cannot be resolved.
        ItemValidationError: an item or the Collection does not validate, a local href points outside its item's
            directory, or an artifact does not match its size or checksum (nothing is written).
        OutputExistsError: ``collection.json`` or an item file exists and ``overwrite`` is False.
        OutputError: the directory cannot be created or written.

    .. versionadded:: 0.1
    """
    if not isinstance(collection_id, str) or _BAD_ID.search(collection_id):
        raise ConfigurationError(f"collection_id {collection_id!r} must be a non-empty name without '/' or '\\'.")
    entries = _read_entries(items)
    directory = Path(directory)
    root = directory.resolve()
    members = _member_paths(entries)
    prepared = [_catalog_item(e, collection_id, title, allow_outside, members) for e in entries]
    collection = collection_document(entries, collection_id, title, description)
    if validate:
        _validate_catalog(entries, [document for document, _ in prepared], collection, schema_dir)
    targets = {document["id"]: root / document["id"] / f"{document['id']}.json" for document, _ in prepared}
    placements = _plan_placements(root, entries, prepared)
    finals = {document["id"]: item_to_json_dict(document, targets[document["id"]]) for document, _ in prepared}
    collection_path = root / COLLECTION_FILE
    _prepare_directory(root, [collection_path, *targets.values()], overwrite)
    written = _write_catalog(root, placements, finals, targets, collection)
    known = {f"{i}/{i}.json": (finals[i], *stat) for i, stat in written.items()}  # indexed without reading them
    index_catalog(collection_path, known)  # the search index (in a read-only place: searches read every file)
    return pystac.Collection.from_file(str(collection_path))


def _validate_catalog(
    entries: list[Entry],
    documents: list[dict[str, Any]],
    collection: dict[str, Any],
    schema_dir: str | os.PathLike[str] | None,
) -> None:
    """Validate every catalog Item (its files are verified when staged) and the Collection.

    Raises:
        ItemValidationError: an Item or the Collection does not validate (nothing is written).
    """
    from mlm_export.stac.validate import validate_item

    for entry, document in zip(entries, documents, strict=True):
        raise_invalid(validate_item(document, schema_dir, check_files=False), f"{entry.source}")
    raise_invalid(validate_item(collection, schema_dir), f"The collection {collection['id']!r}")


def _plan_placements(
    root: Path, entries: list[Entry], prepared: list[tuple[dict[str, Any], ItemArtifacts]]
) -> list[tuple[str, ItemArtifacts, list[Artifact]]]:
    """Where each Item's local artifacts go in the catalog (hrefs set on the documents); the files still to place."""
    placements: list[tuple[str, ItemArtifacts, list[Artifact]]] = []
    for entry, (document, artifacts) in zip(entries, prepared, strict=True):
        item_id = document["id"]
        pending = choose_places(artifacts, root / item_id, (f"{item_id}.json", f"{item_id}.html"))
        _set_artifact_hrefs(document, artifacts)
        placements.append((entry.source, artifacts, pending))
    return placements


def _stage_artifacts(
    root: Path, staging: Path, placements: list[tuple[str, ItemArtifacts, list[Artifact]]]
) -> list[tuple[Path, Path, Artifact]]:
    """Stage (link or copy, then verify) every artifact still to place; (staged, final, artifact) triples."""
    staged = []
    for source, artifacts, pending in placements:
        for artifact in pending:
            relative = Path(artifacts.item_id, artifacts.relative(artifact))
            where = f"{source} (item {artifacts.item_id!r}) asset {artifact.keys[0]!r}"
            stage(artifact, staging / "artifacts" / relative, where)
            staged.append((staging / "artifacts" / relative, root / relative, artifact))
    return staged


def _write_catalog(
    root: Path,
    placements: list[tuple[str, ItemArtifacts, list[Artifact]]],
    finals: dict[str, dict[str, Any]],
    targets: dict[str, Path],
    collection: dict[str, Any],
) -> dict[str, tuple[int, int]]:
    """Stage everything in a temporary directory of ``root``, then publish: artifacts, Items, ``collection.json``.

    Returns: item id -> (mtime_ns, size) of its file as written (a rename keeps both).

    Artifacts are published without replacing anything; Items and the Collection replace theirs (``overwrite``
    was checked). A failure before the first Item is in place removes every artifact this call published.
    """
    try:
        staging = Path(tempfile.mkdtemp(prefix=".mlm-catalog-", dir=root))
    except OSError as exc:
        raise OutputError(f"Cannot write in '{root}': {exc.strerror}.", hint="Choose a writable path.") from exc
    done = Publication()
    items_written = False
    try:
        staged = _stage_artifacts(root, staging, placements)
        written = {}
        for position, (item_id, document) in enumerate(finals.items()):  # staging is private: no temporary files
            written[item_id] = _write_new(staging / f"{position}.json", json_text(document, targets[item_id]))
        _write_new(staging / COLLECTION_FILE, json_text(collection, root / COLLECTION_FILE))
        for staged_path, final, artifact in staged:
            done.make_parents(final, root)
            publish_file(staged_path, final, artifact, done)
        for position, item_id in enumerate(finals):
            done.make_parents(targets[item_id], root)
            items_written = True
            os.replace(staging / f"{position}.json", targets[item_id])
        os.replace(staging / COLLECTION_FILE, root / COLLECTION_FILE)
    except BaseException as exc:
        if not items_written:
            done.undo()
        if isinstance(exc, OSError):
            raise OutputError(f"Cannot write the catalog in '{root}': {exc}.", hint="Check the permissions.") from exc
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def _write_new(path: Path, text: str) -> tuple[int, int]:
    """Write ``text`` to the new file ``path`` (in the private staging directory); its (mtime_ns, size)."""
    with open(path, "x", encoding="utf-8") as stream:
        stream.write(text)
    info = os.stat(path)
    return info.st_mtime_ns, info.st_size
