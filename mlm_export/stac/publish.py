"""Publish model Items to a STAC API with the Transactions extension (stac-fastapi-pgstac and the like).

:func:`publish` streams: it reads the Items (files, folders, catalogs, dicts, pystac Items; any iterable, consumed
lazily, see :mod:`mlm_export.stac.item_stream`) :data:`CHUNK_SIZE` at a time and, for each chunk, (1) refuses an id
seen earlier in the stream, (2) asks the server which of the chunk's ids it already holds (one ``POST /search``, under
``if_exists``), (3) validates every Item (local artifacts against their ``file:size``/``file:checksum``), rewrites
local hrefs to public URLs (``href_base=``) or uploads the artifacts first (``upload_to=``, see
:mod:`mlm_export.transfer`), refusing an Item that would still point at a local file, then (4) sends the chunk
through ``POST /collections/{id}/bulk_items`` when the server offers it, else one ``POST`` (or ``PUT`` to replace)
per Item. Chunks are sent by other threads while the next one is read and validated; nothing of a chunk is kept
once it landed but its ids. Client memory is therefore flat in the number of Items. Once a first chunk landed in
bulk (the Collection and its partition exist), :data:`IN_FLIGHT` (2) bulk requests are in flight at a time, so the
server stores one chunk while it receives the next (on pgstac, two concurrent loads that widen a partition's datetime
constraints at once can fail; the local API's :mod:`~mlm_export.stac.pgstac_tuning` makes pgstac serialise just
that step, and elsewhere the 500 is retried like any 5xx); one at a time before that, and when Items go one by one.

Contract: a chunk is sent only once all of its Items passed; an error in chunk *k* leaves chunks 1..k-1 stored and
sends nothing after chunk *k+1* (nothing from chunk *k* on when the error is found in the client: a check, a
validation, an id conflict); ``error.published`` lists exactly what landed: chunks 1..k-1, and chunk *k+1* as well
if it was in flight when the server answered chunk *k* with an error and it landed. A problem in the first chunk
sends nothing.
The Collection, when missing, is created from the first chunk (extent and MLM summaries, validated like
:func:`~mlm_export.stac.collection.build_catalog`'s) and updated once at the end (``PUT``) to cover every Item sent.

Connection errors and 5xx answers are retried with exponential backoff (bounded, see
:mod:`mlm_export.stac.api_http`); a 4xx answer is a typed error quoting the server. Header values (tokens) are never
printed.

Queryables: STAC API Transactions has no request that registers queryables (stac-fastapi-pgstac keeps them in
pgstac's ``queryables`` table only), so a created Collection offers the MLM fields in ``/queryables`` only where the
server's database has them: the local API (:mod:`mlm_export.stac.local_api`) loads them at start-up; on another
pgstac server run once ``pypgstac load_queryables <mlm_export/stac/mlm_queryables.json> --dsn <DSN>``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlparse

import httpx

from mlm_export.errors import ConfigurationError, MissingDependencyError, MLMExportError
from mlm_export.provenance.container import is_registry_reference
from mlm_export.stac.api_http import api_headers, check_api_url
from mlm_export.stac.api_load import CollectionSummary, Loader, collection_exists, save_collection
from mlm_export.stac.collection import raise_invalid
from mlm_export.stac.entries import CATALOG_FILE, COLLECTION_FILE, Entry, ItemSource, is_url
from mlm_export.stac.io import decode_href, encode_href
from mlm_export.stac.item_stream import is_item_source, item_entries
from mlm_export.stac.writer import check_href

IfExists = Literal["error", "skip", "replace"]
IF_EXISTS_CHOICES = ("error", "skip", "replace")
#: Items per chunk: per bulk request, per id query, per validation step.
CHUNK_SIZE = 100
#: Bulk requests in flight at most (once the first chunk landed): the server stores one chunk while it reads the
#: next request, and PostgreSQL stores two at once on two cores.
IN_FLIGHT = 2
#: The "N of M Items landed" of an error's message.
_LANDED = re.compile(r"\d+(?: of \d+)? Items landed")
_NOTHING_SENT = "Nothing was sent."
_STRUCTURAL_RELS = {"self", "root", "parent", "collection", "item", "items"}


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` did.

    Attributes:
        url: the STAC API root URL.
        collection_id: the Collection the Items went to.
        collection_created: whether the Collection was created.
        published: ids of the Items stored (inserted or replaced).
        skipped: ids of the Items left as they were (``if_exists="skip"``).
    """

    url: str
    collection_id: str
    collection_created: bool
    published: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    def item_url(self, item_id: str) -> str:
        """``GET`` URL of a published Item."""
        return f"{self.url}/collections/{quote(self.collection_id)}/items/{quote(item_id)}"


def _is_local(href: str) -> bool:
    parsed = urlparse(href)
    return parsed.scheme in ("", "file") or len(parsed.scheme) == 1


def _public_href(href: str, entry: Entry, href_base: str | None, where: str) -> str:
    """``href`` unchanged when remote; a local one rewritten under ``href_base``, else refused."""
    if not _is_local(href):
        return href
    if href_base is None:
        raise ConfigurationError(
            f"{where} points at the local file {href!r}; a STAC API client could not read it. Nothing was sent.",
            hint="Pass href_base= (--href-base) with the public URL of the Item's directory, or upload_to= "
            "(--upload-to) to copy the artifacts to object storage first.",
        )
    path = Path(decode_href(href))
    if not path.is_absolute() and entry.base is not None:
        path = entry.base / path
    if path.is_absolute():
        mapped = _href_base_directory(entry)
        if mapped is None or not path.resolve().is_relative_to(mapped):
            raise ConfigurationError(
                f"{where} points at {href!r}, outside the Item's directory; href_base cannot map it to a URL.",
                hint="Keep the artifacts next to the Item (mlm-export export does), or use upload_to=.",
            )
        path = path.resolve().relative_to(mapped)
    return f"{href_base.rstrip('/')}/{encode_href(path.as_posix().lstrip('./'))}"


def _href_base_directory(entry: Entry) -> Path | None:
    """The directory ``href_base`` is the URL of: the catalog's for an Item of a local catalog, else the Item's.

    An Item of a catalog written by :func:`~mlm_export.stac.collection.build_catalog` has a relative ``root`` link
    to the catalog's ``collection.json``; its artifacts lie in ``<catalog>/<item id>/``, so one ``href_base`` (the
    catalog directory's URL) serves every Item of the catalog.
    """
    if entry.base is None:
        return None
    base = entry.base.resolve()
    for link in entry.document.get("links") or []:
        href = link.get("href") if isinstance(link, Mapping) and link.get("rel") == "root" else None
        if isinstance(href, str) and _is_local(href) and not os.path.isabs(decode_href(href)):
            root = (base / decode_href(href)).resolve()
            if root.is_file() and root.parent != base and base.is_relative_to(root.parent):
                return root.parent
    return base


def _api_document(entry: Entry, collection_id: str, href_base: str | None, api_url: str) -> dict[str, Any]:
    """The Item as sent: public hrefs, structural links replaced by ``collection``, ``collection`` set."""
    document = dict(entry.document)
    where = f"{entry.source} (item {document['id']!r})"
    assets = {}
    for key, asset in (document.get("assets") or {}).items():
        asset = dict(asset)
        href = asset.get("href")
        if not isinstance(href, str) or not href:
            raise ConfigurationError(f"{where} asset {key!r} has no href.", hint="Every asset needs an href.")
        check_href(href, f"{where} asset {key!r}")
        if not is_registry_reference(asset):  # an image in a registry (mlm:container) is published as is
            asset["href"] = _public_href(href, entry, href_base, f"{where} asset {key!r}")
        assets[key] = asset
    document["assets"] = assets
    links = []
    for link in document.get("links") or []:
        if not isinstance(link, Mapping) or link.get("rel") in _STRUCTURAL_RELS:
            continue
        link = dict(link)
        check_href(str(link.get("href", "")), f"{where} link rel={link.get('rel')!r}")
        link["href"] = _public_href(str(link.get("href", "")), entry, href_base, f"{where} link {link.get('rel')!r}")
        links.append(link)
    collection_url = f"{api_url}/collections/{quote(collection_id)}"
    document["links"] = [{"rel": "collection", "href": collection_url, "type": "application/json"}, *links]
    document["collection"] = collection_id
    return document


def _uploaded(entry: Entry, upload_to: str, href_base: str | None) -> Entry:
    try:
        from mlm_export.transfer import upload_artifacts
    except ImportError as exc:
        raise MissingDependencyError(
            f"upload_to={upload_to!r} needs mlm_export.transfer (artifact upload), which is not available: {exc}.",
            hint="Install mlm-export with the remote extra, or upload the artifacts yourself and pass href_base=.",
        ) from exc
    document = upload_artifacts(entry.document, entry.base, upload_to, public_url=href_base)
    return Entry(document, entry.source, entry.base, entry.href)


def _prepared(
    entries: list[Entry],
    api_url: str,
    collection_id: str,
    href_base: str | None,
    upload_to: str | None,
    schema_dir: Any,
) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Validate ``entries``, then upload their artifacts (``upload_to``) and rewrite them as sent to the API."""
    from mlm_export.stac.compiled import shared_store
    from mlm_export.stac.validate import validate_item, validate_read

    store = shared_store(schema_dir)
    for entry in entries:  # once per Item: the rewriting below only puts URL strings in hrefs and one link
        if entry.href and entry.base is not None and not is_url(entry.href):  # read from its file: not read again
            report = validate_read(entry.document, entry.base, entry.href, store)
        else:
            report = validate_item(entry.document, schema_dir, check_files=True)
        raise_invalid(report, entry.source, _NOTHING_SENT)
    if upload_to is not None:
        entries = [_uploaded(entry, upload_to, href_base) for entry in entries]
    return entries, [_api_document(entry, collection_id, href_base, api_url) for entry in entries]


def _check_unique(entries: list[Entry], seen: set[str]) -> None:
    """Add the ids of ``entries`` to ``seen``, refusing one already there."""
    for entry in entries:
        item_id = entry.document["id"]
        if item_id in seen:
            raise ConfigurationError(
                f"items: {entry.source} has the id {item_id!r} of an Item before it; ids must be unique. "
                f"{_NOTHING_SENT}",
                hint="Give one of them another id, or leave one out.",
            )
        seen.add(item_id)


def prepare_items(
    items: Iterable[ItemSource] | ItemSource,
    api_url: str,
    collection_id: str,
    *,
    href_base: str | None = None,
    upload_to: str | None = None,
    schema_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Read, validate and rewrite ``items`` for a STAC API, all at once; nothing is sent. See :func:`publish`.

    Raises:
        ConfigurationError: no items, duplicate ids, a local href without ``href_base``/``upload_to``, credentials.
        ItemValidationError: an Item does not validate.
    """
    entries = list(item_entries(items))
    if not entries:
        raise ConfigurationError("items: nothing to publish; pass at least one model Item.")
    _check_unique(entries, set())
    return _prepared(entries, api_url, collection_id, href_base, upload_to, schema_dir)


def _chunks(entries: Iterator[Entry], size: int) -> Iterator[list[Entry]]:
    while chunk := list(itertools.islice(entries, size)):
        yield chunk


class _Publication:
    """One :func:`publish` call: the chunk loop, the Collection, and what landed."""

    def __init__(
        self, client: httpx.Client, url: str, collection_id: str, if_exists: str, options: dict[str, Any]
    ) -> None:
        self.url, self.collection_id, self.if_exists, self.options = url, collection_id, if_exists, options
        self.loader = Loader(client, collection_id, if_exists, options["total"])
        self.summary = CollectionSummary(collection_id)
        self.exists: bool | None = None  # asked with the first chunk, after the checks that need no server
        self.created = False
        self.created_with = 0  # Items the created Collection covers
        self.seen: set[str] = set()

    def run(self, entries: Iterator[Entry], bar: Any) -> None:
        """Read, check and send ``entries`` chunk by chunk, reading and checking while earlier chunks are sent."""
        pending: deque[tuple[Future[list[str]], int]] = deque()
        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="mlm-export-publish") as sender:
            try:
                for chunk in _chunks(entries, CHUNK_SIZE):
                    documents = self._prepare(chunk, pending)
                    # one at a time until a chunk landed in bulk (the partition exists; the server has bulk_items);
                    # a chunk that failed meanwhile is reported before another is sent
                    while pending and (pending[0][0].done() or len(pending) >= self._in_flight()):
                        self._wait(pending, bar)
                    pending.append((sender.submit(self.loader.load, documents), len(chunk)))
                while pending:
                    self._wait(pending, bar)
                self._finish()
            except BaseException as exc:
                self._settle(pending, exc)
                raise

    def _in_flight(self) -> int:
        """Chunks that may be in flight: :data:`IN_FLIGHT` once one landed in bulk, else 1."""
        return IN_FLIGHT if self.loader.bulk and self.loader.published else 1

    def _finish(self) -> None:
        """Refuse an empty stream; bring a Collection made from the first chunk up to every Item sent."""
        if not self.seen:
            raise ConfigurationError("items: nothing to publish; pass at least one model Item.")
        if self.created and self.summary.count > self.created_with:  # extent and summaries of every Item sent
            assert self.summary.document is not None
            save_collection(self.loader.client, self.summary.document, self.options["schema_dir"], create=False)

    def _prepare(self, chunk: list[Entry], pending: deque[tuple[Future[list[str]], int]]) -> list[dict[str, Any]]:
        """The chunk's documents as sent, once its ids passed ``if_exists`` and its Items validated."""
        _check_unique(chunk, self.seen)
        if self.exists is None:  # the first chunk: what needs no server is said before the first request
            if self.options["upload_to"] is None:  # a local href without href_base
                for entry in chunk:
                    _api_document(entry, self.collection_id, self.options["href_base"], self.url)
            self.exists = collection_exists(self.loader.client, self.collection_id)
        if self.exists and not self.created and self.if_exists != "replace":  # a Collection we made held no id
            existing = self.loader.existing([e.document["id"] for e in chunk])
            if existing and self.if_exists == "error":
                while pending:
                    self._wait(pending, None)
                raise self.loader.conflict(sorted(existing))
            self.loader.skipped += [e.document["id"] for e in chunk if e.document["id"] in existing]
            chunk = [e for e in chunk if e.document["id"] not in existing]
        options = self.options
        entries, documents = _prepared(chunk, self.url, self.collection_id, options["href_base"],
                                       options["upload_to"], options["schema_dir"])  # fmt: skip
        if not self.exists or self.created:
            self.summary.add([Entry(d, e.source, e.base, e.href) for e, d in zip(entries, documents, strict=True)])
        if not self.exists and self.summary.document is not None:
            self.created = save_collection(self.loader.client, self.summary.document, options["schema_dir"],
                                           create=True)  # fmt: skip
            self.exists, self.created_with = True, self.summary.count
        return documents

    def _wait(self, pending: deque[tuple[Future[list[str]], int]], bar: Any) -> None:
        """Wait for the oldest chunk in flight; add the ids it stored in bulk to what landed, in the chunks' order."""
        future, count = pending.popleft()
        self.loader.published += future.result()
        if bar is not None:
            bar.update(count)

    def _settle(self, pending: deque[tuple[Future[list[str]], int]], error: BaseException) -> None:
        """After ``error``: wait for the chunks in flight, then say in the error exactly what landed."""
        while pending:
            try:
                self._wait(pending, None)
            except Exception:  # noqa: BLE001 - ``error`` is the one reported; this chunk did not land
                pass
        if not isinstance(error, MLMExportError):
            return
        published = list(self.loader.published)
        error.published = published  # type: ignore[attr-defined]
        if published and _NOTHING_SENT in error.message:
            landed = (f"The {len(published)} Items before its chunk landed (error.published lists them); nothing "
                      "from its chunk on was sent.")  # fmt: skip
            error.message = error.message.replace(_NOTHING_SENT, landed)
        else:  # a chunk answered with an error while the next one was in flight: that one may have landed too
            error.message = _LANDED.sub(self.loader.landed(), error.message)
        error.args = (error.message, *error.args[1:])


def publish(
    items: Iterable[ItemSource] | ItemSource,
    api_url: str,
    collection_id: str,
    *,
    if_exists: IfExists = "error",
    headers: Mapping[str, str] | None = None,
    href_base: str | None = None,
    upload_to: str | None = None,
    schema_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    timeout: float = 60.0,
) -> PublishResult:
    """Publish model Items to the STAC API at ``api_url`` in the Collection ``collection_id``.

    Args:
        items: model Items: paths of Item JSON files, of folders of them or of catalogs (``collection.json``,
            ``catalog.json`` or their directory), dicts or ``pystac.Item`` objects; one or any iterable of them,
            consumed lazily (a generator is read at most two chunks ahead of what was sent).
        api_url: root URL of a STAC API with the Transactions extension (``http(s)://``).
        collection_id: the Collection; created from the Items (extent, MLM summaries) when missing.
        if_exists: what to do with an Item id the Collection already holds: ``"error"`` (raise
            :class:`ItemExistsError`), ``"skip"`` (keep the stored one) or ``"replace"``.
        headers: HTTP headers sent with every request (e.g. ``{"Authorization": "Bearer ..."}``); without an
            ``Authorization`` header, ``$MLM_EXPORT_STAC_TOKEN`` is sent as a bearer token. Never printed.
        href_base: public URL of the directory each Item file is in; local asset hrefs become
            ``href_base/<path relative to the Item>``. Without it (or ``upload_to``) local hrefs are refused.
        upload_to: ``s3://bucket/prefix`` or ``file:///dir``: copy the local artifacts there first and point the
            hrefs at them (``href_base`` is then the public URL of ``upload_to``).
        schema_dir: offline schema directory for validation.
        progress: show a progress bar (default: on a terminal).
        timeout: seconds per HTTP request.

    Returns:
        A :class:`PublishResult` with the ids published and skipped.

    Raises:
        ConfigurationError: a bad argument, a duplicate id, a local href without ``href_base``/``upload_to``,
            credentials in an href.
        ItemValidationError: an Item or the Collection does not validate.
        ItemExistsError: ``if_exists="error"`` and the Collection holds one of the ids (409).
        AuthenticationError: the server answered 401/403.
        STACAPIError: the server is unreachable, kept answering 5xx after the retries, or refused a request.

        Every error raised once reading began has ``error.published``: the ids stored before it (the chunks before
        the one that failed; none when it was the first chunk, and then nothing was sent at all).

    .. versionadded:: 0.2
    """
    url = check_api_url(api_url)
    _check_arguments(if_exists, collection_id, href_base, upload_to)
    total = _known_count(items)
    options = {"href_base": href_base, "upload_to": upload_to, "schema_dir": schema_dir, "total": total}
    with httpx.Client(base_url=url, headers=api_headers(headers), timeout=timeout) as client:
        publication = _Publication(client, url, collection_id, if_exists, options)
        with _progress_bar(total, f"publish to {collection_id}", progress) as bar:
            publication.run(item_entries(items), bar)
    loader = publication.loader
    return PublishResult(url, collection_id, publication.created, tuple(loader.published), tuple(loader.skipped))


def _check_arguments(if_exists: Any, collection_id: Any, href_base: Any, upload_to: Any = None) -> None:
    """Check :func:`publish`'s arguments that need no request.

    Raises:
        ConfigurationError: an unknown ``if_exists``, a ``collection_id`` that is no name, an ``href_base`` that
            is no URL (or carries credentials), an ``upload_to`` that is not s3:// or file://.
    """
    if upload_to is not None and (not isinstance(upload_to, str) or urlparse(upload_to).scheme not in ("s3", "file")):
        raise ConfigurationError(f"upload_to {upload_to!r} is not s3:// or file://.", hint="e.g. s3://bucket/models")
    if if_exists not in IF_EXISTS_CHOICES:
        raise ConfigurationError(f"if_exists: expected one of {', '.join(IF_EXISTS_CHOICES)}, got {if_exists!r}.")
    if not isinstance(collection_id, str) or not collection_id or "/" in collection_id:
        raise ConfigurationError(f"collection_id {collection_id!r} must be a non-empty name without '/'.")
    if href_base is not None and (not isinstance(href_base, str) or len(urlparse(href_base).scheme) < 2):
        raise ConfigurationError(
            f"href_base: expected a URL (https://..., s3://..., file:///...), got {href_base!r}.",
            hint="Give the public URL of the directory the Item files are in.",
        )
    if href_base is not None:
        check_href(href_base, "href_base")


def _known_count(items: Any) -> int | None:
    """How many Items ``items`` holds when that is known without reading them (a list of files or objects)."""
    if is_item_source(items):
        return None if isinstance(items, (str, os.PathLike)) else 1  # a path may be a folder or catalog
    if not isinstance(items, (list, tuple)):
        return None
    for item in items:  # by name only: no file is touched
        name = os.path.basename(os.fspath(item)) if isinstance(item, (str, os.PathLike)) else None
        if name is not None and (not name.endswith(".json") or name in (COLLECTION_FILE, CATALOG_FILE)):
            return None  # a folder or a catalog
    return len(items)


def _progress_bar(total: int | None, desc: str, progress: bool | None) -> Any:
    """A tqdm bar on stderr counting Items and Items/s (default: shown when stderr is a terminal).

    Sized like :mod:`mlm_export.hashing`'s: tqdm draws nothing on a terminal that reports a size of 0 x 0.
    """
    import shutil
    import sys

    from tqdm import tqdm

    show = progress if progress is not None else sys.stderr.isatty()
    size = shutil.get_terminal_size()
    return tqdm(total=total, unit="Item", desc=desc, disable=not show, ncols=size.columns, nrows=size.lines)


__all__ = ["IF_EXISTS_CHOICES", "PublishResult", "prepare_items", "publish"]
