"""Publish model Items to a STAC API with the Transactions extension (stac-fastapi-pgstac and the like).

:func:`publish` checks everything before it sends anything: every Item is validated (local artifacts against their
``file:size``/``file:checksum``), local hrefs are rewritten to public URLs (``href_base=``) or the artifacts are
uploaded first (``upload_to=``, see :mod:`mlm_export.transfer`), and an Item that would still point at a local file
is refused, naming the asset. Then it creates the Collection when it is missing (extent and MLM summaries of the
Items, validated like :func:`~mlm_export.stac.collection.build_catalog`'s) and loads the Items in chunks through
``POST /collections/{id}/bulk_items`` when the server offers it, else one ``POST`` (or ``PUT`` to replace) per Item.

Connection errors and 5xx answers are retried with exponential backoff (bounded, see
:mod:`mlm_export.stac.api_http`); a 4xx answer is a typed error quoting the server. Every error says how many Items
had already landed (``error.published``). Header values (tokens) are never printed.

Queryables: STAC API Transactions has no request that registers queryables (stac-fastapi-pgstac keeps them in
pgstac's ``queryables`` table only), so a created Collection offers the MLM fields in ``/queryables`` only where the
server's database has them: the local API (:mod:`mlm_export.stac.local_api`) loads them at start-up; on another
pgstac server run once ``pypgstac load_queryables <mlm_export/stac/mlm_queryables.json> --dsn <DSN>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlparse

import httpx

from mlm_export.errors import ConfigurationError, ItemExistsError, MissingDependencyError
from mlm_export.provenance.container import is_registry_reference
from mlm_export.stac.api_http import api_error, api_headers, check_api_url, send
from mlm_export.stac.collection import collection_document, raise_invalid
from mlm_export.stac.entries import Entry, ItemSource, read_entry
from mlm_export.stac.io import decode_href, encode_href
from mlm_export.stac.writer import check_href

IfExists = Literal["error", "skip", "replace"]
IF_EXISTS_CHOICES = ("error", "skip", "replace")
#: Items per bulk request.
CHUNK_SIZE = 100
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


def prepare_items(
    items: Iterable[ItemSource] | ItemSource,
    api_url: str,
    collection_id: str,
    *,
    href_base: str | None = None,
    upload_to: str | None = None,
    schema_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Read, validate and rewrite ``items`` for a STAC API; nothing is sent. See :func:`publish`.

    Raises:
        ConfigurationError: no items, duplicate ids, a local href without ``href_base``/``upload_to``, credentials.
        ItemValidationError: an Item does not validate.
    """
    from mlm_export.stac.validate import validate_item

    if isinstance(items, (str, os.PathLike, Mapping)) or hasattr(items, "to_dict"):
        items = [items]  # type: ignore[list-item]
    entries = [read_entry(item, copy_dict=False) for item in items]  # type: ignore[union-attr] # never modified
    if not entries:
        raise ConfigurationError("items: nothing to publish; pass at least one model Item.")
    seen: dict[str, str] = {}
    for entry in entries:
        item_id = entry.document["id"]
        if item_id in seen:
            raise ConfigurationError(f"items: {seen[item_id]} and {entry.source} have the same id {item_id!r}.")
        seen[item_id] = entry.source
    for entry in entries:  # once per Item: the rewriting below only puts URL strings in hrefs and one link
        original = entry.href if entry.href and entry.base is not None else entry.document
        raise_invalid(validate_item(original, schema_dir, check_files=True), entry.source, "Nothing was sent.")
    if upload_to is not None:
        entries = [_uploaded(entry, upload_to, href_base) for entry in entries]
    documents = [_api_document(entry, collection_id, href_base, api_url) for entry in entries]
    return entries, documents


def _ensure_collection(
    client: httpx.Client, collection_id: str, entries: list[Entry], documents: list[dict[str, Any]], schema_dir: Any
) -> bool:
    """Create the Collection when it is missing; returns whether it was created."""
    from mlm_export.stac.validate import validate_item

    path = f"/collections/{quote(collection_id)}"
    response = send(client, "GET", path, f"GET {client.base_url}{path}")
    if response.status_code == 200:
        return False
    if response.status_code != 404:
        raise api_error(response, f"GET {client.base_url}{path}", client.headers)
    api_entries = [Entry(d, e.source, e.base, e.href) for e, d in zip(entries, documents, strict=True)]
    collection = collection_document(api_entries, collection_id, None, None)
    collection["links"] = []
    raise_invalid(validate_item(collection, schema_dir), f"The collection {collection_id!r}", "Nothing was sent.")
    response = send(client, "POST", "/collections", f"POST {client.base_url}/collections", json=collection)
    if response.status_code not in (200, 201, 409):  # 409: created meanwhile by someone else
        raise api_error(response, f"POST {client.base_url}/collections ({collection_id!r})", client.headers)
    return response.status_code != 409


def _existing_ids(client: httpx.Client, collection_id: str, ids: list[str]) -> set[str]:
    body = {"collections": [collection_id], "ids": ids, "limit": len(ids), "fields": {"include": ["id"]}}
    response = send(client, "POST", "/search", f"POST {client.base_url}/search", json=body)
    if response.status_code != 200:
        raise api_error(response, f"POST {client.base_url}/search (ids already there)", client.headers)
    return {str(f.get("id")) for f in response.json().get("features") or []}


class _Loader:
    """Sends chunks of Items, in bulk while the server offers it, and keeps count of what landed."""

    def __init__(self, client: httpx.Client, collection_id: str, if_exists: str, total: int) -> None:
        self.client, self.collection_id, self.if_exists = client, collection_id, if_exists
        self.items_path = f"/collections/{quote(collection_id)}/items"
        self.bulk = True
        self.published: list[str] = []
        self.skipped: list[str] = []
        self.total = total

    def _extra(self) -> dict[str, Any]:
        return {"published": list(self.published)}

    def _landed(self) -> str:
        return f"{len(self.published)} of {self.total} Items landed"

    def _conflict(self, ids: list[str]) -> ItemExistsError:
        existing = sorted(_existing_ids(self.client, self.collection_id, ids)) or ids
        shown = ", ".join(repr(i) for i in existing[:5]) + (" ..." if len(existing) > 5 else "")
        return ItemExistsError(
            f"{self.client.base_url}{self.items_path}: the collection {self.collection_id!r} already holds item(s) "
            f"{shown} (409); {self._landed()}.",
            status=409,
            published=list(self.published),
            hint="Pass if_exists='skip' (--if-exists skip) to keep them or 'replace' to overwrite them "
            "(choices: error, skip, replace).",
        )

    def load(self, chunk: list[dict[str, Any]]) -> None:
        """Store ``chunk`` according to ``if_exists``."""
        if self.if_exists == "skip":
            existing = _existing_ids(self.client, self.collection_id, [d["id"] for d in chunk])
            self.skipped += [d["id"] for d in chunk if d["id"] in existing]
            chunk = [d for d in chunk if d["id"] not in existing]
        if not chunk:
            return
        if self.bulk and self._load_bulk(chunk):
            return
        for document in chunk:
            self._load_one(document)

    def _load_bulk(self, chunk: list[dict[str, Any]]) -> bool:
        path = f"/collections/{quote(self.collection_id)}/bulk_items"
        method = "upsert" if self.if_exists == "replace" else "insert"
        what = f"POST {self.client.base_url}{path} ({len(chunk)} Items from {chunk[0]['id']!r}; {self._landed()})"
        body = {"items": {d["id"]: d for d in chunk}, "method": method}
        response = send(self.client, "POST", path, what, json=body, **self._extra())
        if response.status_code in (404, 405):
            self.bulk = False  # the server has no bulk endpoint
            return False
        if response.status_code == 409:
            raise self._conflict([d["id"] for d in chunk])
        if response.status_code >= 300:
            raise api_error(response, what, self.client.headers, **self._extra())
        self.published += [d["id"] for d in chunk]
        return True

    def _load_one(self, document: dict[str, Any]) -> None:
        what = f"POST {self.client.base_url}{self.items_path} (item {document['id']!r}; {self._landed()})"
        response = send(self.client, "POST", self.items_path, what, json=document, **self._extra())
        if response.status_code == 409 and self.if_exists == "replace":
            path = f"{self.items_path}/{quote(document['id'])}"
            what = f"PUT {self.client.base_url}{path} ({self._landed()})"
            response = send(self.client, "PUT", path, what, json=document, **self._extra())
        elif response.status_code == 409:
            raise self._conflict([document["id"]])
        if response.status_code >= 300:
            raise api_error(response, what, self.client.headers, **self._extra())
        self.published.append(document["id"])


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
        items: model Items (paths of Item JSON files, dicts or ``pystac.Item`` objects).
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
        ConfigurationError: a bad argument, a local href without ``href_base``/``upload_to``, credentials in an
            href (nothing is sent).
        ItemValidationError: an Item or the Collection does not validate (nothing is sent).
        ItemExistsError: ``if_exists="error"`` and the Collection holds one of the ids (409).
        AuthenticationError: the server answered 401/403.
        STACAPIError: the server is unreachable, kept answering 5xx after the retries, or refused a request
            (``error.published`` lists what landed before).

    .. versionadded:: 0.2
    """
    url = check_api_url(api_url)
    _check_arguments(if_exists, collection_id, href_base)
    entries, documents = prepare_items(
        items, url, collection_id, href_base=href_base, upload_to=upload_to, schema_dir=schema_dir
    )
    with httpx.Client(base_url=url, headers=api_headers(headers), timeout=timeout) as client:
        created = _ensure_collection(client, collection_id, entries, documents, schema_dir)
        loader = _Loader(client, collection_id, if_exists, len(documents))
        _load_in_chunks(loader, documents, f"publish to {collection_id}", progress)
    return PublishResult(url, collection_id, created, tuple(loader.published), tuple(loader.skipped))


def _check_arguments(if_exists: Any, collection_id: Any, href_base: Any) -> None:
    """Check :func:`publish`'s arguments that need no request.

    Raises:
        ConfigurationError: an unknown ``if_exists``, a ``collection_id`` that is no name, or an ``href_base`` that
            is no URL (or carries credentials).
    """
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


def _load_in_chunks(loader: _Loader, documents: list[dict[str, Any]], desc: str, progress: bool | None) -> None:
    """Send ``documents`` through ``loader``, :data:`CHUNK_SIZE` at a time, with a progress bar."""
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress
    with tqdm(total=len(documents), unit="item", desc=desc, disable=disable) as bar:
        for start in range(0, len(documents), CHUNK_SIZE):
            chunk = documents[start : start + CHUNK_SIZE]
            loader.load(chunk)
            bar.update(len(chunk))


__all__ = ["IF_EXISTS_CHOICES", "PublishResult", "prepare_items", "publish"]
