"""Loading chunks of Items into a STAC API (Transactions): ``if_exists``, id conflicts, and the Collection's summary.

:class:`Loader` sends a chunk through ``POST /collections/{id}/bulk_items`` while the server offers it (else one
``POST``, or ``PUT`` to replace, per Item) and keeps count of what landed; :meth:`Loader.existing` asks
which ids of a chunk the Collection already holds with one ``POST /search`` (``ids``, ``limit``, ``fields``).
:class:`CollectionSummary` folds the Collection document (extent, MLM summaries) of every chunk sent into one, so
that a Collection created from the first chunk can be updated once at the end to cover every Item, without keeping
the Items. Used by :func:`mlm_export.stac.publish.publish`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pystac.utils import str_to_datetime

from mlm_export.errors import ItemExistsError
from mlm_export.stac.api_http import api_error, send
from mlm_export.stac.collection import _enum_schema, collection_document, raise_invalid
from mlm_export.stac.entries import Entry

#: Ids shown in a conflict message.
_SHOWN_IDS = 5


def existing_ids(client: httpx.Client, collection_id: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` the Collection holds: one ``POST /search`` for all of them (ids only)."""
    body = {"collections": [collection_id], "ids": ids, "limit": len(ids), "fields": {"include": ["id"]}}
    response = send(client, "POST", "/search", f"POST {client.base_url}/search", json=body)
    if response.status_code != 200:
        raise api_error(response, f"POST {client.base_url}/search (ids already there)", client.headers)
    return {str(f.get("id")) for f in response.json().get("features") or []}


def collection_exists(client: httpx.Client, collection_id: str) -> bool:
    """Whether the API has the Collection (``GET /collections/{id}``: 200 or 404)."""
    path = f"/collections/{quote(collection_id)}"
    response = send(client, "GET", path, f"GET {client.base_url}{path}")
    if response.status_code not in (200, 404):
        raise api_error(response, f"GET {client.base_url}{path}", client.headers)
    return response.status_code == 200


def save_collection(client: httpx.Client, collection: dict[str, Any], schema_dir: Any, *, create: bool) -> bool:
    """Validate ``collection``, then create it (``POST``) or replace it (``PUT``).

    Returns False when ``create`` found it created meanwhile by someone else (409), else True.
    """
    from mlm_export.stac.validate import validate_item

    raise_invalid(validate_item(collection, schema_dir), f"The collection {collection['id']!r}", "Nothing was sent.")
    if create:
        response = send(client, "POST", "/collections", f"POST {client.base_url}/collections", json=collection)
        if response.status_code not in (200, 201, 409):  # 409: created meanwhile by someone else
            raise api_error(response, f"POST {client.base_url}/collections ({collection['id']!r})", client.headers)
        return response.status_code != 409
    path = f"/collections/{quote(collection['id'])}"
    response = send(client, "PUT", path, f"PUT {client.base_url}{path}", json=collection)
    if response.status_code >= 300:
        raise api_error(response, f"PUT {client.base_url}{path} (extent and summaries)", client.headers)
    return True


class Loader:
    """Sends chunks of Items, in bulk while the server offers it, and keeps count of what landed.

    ``total`` is the number of Items when known (a list), for messages ("3 of 7 Items landed").
    """

    def __init__(self, client: httpx.Client, collection_id: str, if_exists: str, total: int | None) -> None:
        self.client, self.collection_id, self.if_exists = client, collection_id, if_exists
        self.items_path = f"/collections/{quote(collection_id)}/items"
        self.bulk = True
        self.published: list[str] = []
        self.skipped: list[str] = []
        self.total = total

    def _extra(self) -> dict[str, Any]:
        return {"published": list(self.published)}

    def landed(self) -> str:
        """``"N of M Items landed"`` (``"N Items landed"`` when the total is unknown)."""
        of = f" of {self.total}" if self.total is not None else ""
        return f"{len(self.published)}{of} Items landed"

    def existing(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` the Collection already holds (one request)."""
        return existing_ids(self.client, self.collection_id, ids)

    def conflict(self, existing: list[str]) -> ItemExistsError:
        """The error for ids the Collection already holds under ``if_exists="error"``."""
        shown = ", ".join(repr(i) for i in existing[:_SHOWN_IDS]) + (" ..." if len(existing) > _SHOWN_IDS else "")
        return ItemExistsError(
            f"{self.client.base_url}{self.items_path}: the collection {self.collection_id!r} already holds item(s) "
            f"{shown} (409); {self.landed()}.",
            status=409,
            published=list(self.published),
            hint="Pass if_exists='skip' (--if-exists skip) to keep them or 'replace' to overwrite them "
            "(choices: error, skip, replace).",
        )

    def load(self, chunk: list[dict[str, Any]]) -> list[str]:
        """Store ``chunk`` (already checked against ``if_exists``).

        Returns:
            The ids stored in bulk, for the caller to add to :attr:`published` in the order of the chunks (two may be
            in flight); ``[]`` when they were stored one by one (each added to :attr:`published` as it landed).
        """
        if not chunk:
            return []
        if self.bulk:
            landed = self._load_bulk(chunk)
            if landed is not None:
                return landed
        for document in chunk:
            self._load_one(document)
        return []

    def _load_bulk(self, chunk: list[dict[str, Any]]) -> list[str] | None:
        """The ids stored (all of the chunk's), or None when the server has no bulk endpoint."""
        path = f"/collections/{quote(self.collection_id)}/bulk_items"
        method = "upsert" if self.if_exists == "replace" else "insert"
        what = f"POST {self.client.base_url}{path} ({len(chunk)} Items from {chunk[0]['id']!r}; {self.landed()})"
        body = {"items": {d["id"]: d for d in chunk}, "method": method}
        response = send(self.client, "POST", path, what, json=body, **self._extra())
        if response.status_code in (404, 405):
            self.bulk = False  # the server has no bulk endpoint
            return None
        if response.status_code == 409:  # stored meanwhile by someone else
            ids = [d["id"] for d in chunk]
            raise self.conflict(sorted(self.existing(ids)) or ids)
        if response.status_code >= 300:
            raise api_error(response, what, self.client.headers, **self._extra())
        return [d["id"] for d in chunk]

    def _load_one(self, document: dict[str, Any]) -> None:
        what = f"POST {self.client.base_url}{self.items_path} (item {document['id']!r}; {self.landed()})"
        response = send(self.client, "POST", self.items_path, what, json=document, **self._extra())
        if response.status_code == 409 and self.if_exists == "replace":
            path = f"{self.items_path}/{quote(document['id'])}"
            what = f"PUT {self.client.base_url}{path} ({self.landed()})"
            response = send(self.client, "PUT", path, what, json=document, **self._extra())
        elif response.status_code == 409:
            raise self.conflict([document["id"]])
        if response.status_code >= 300:
            raise api_error(response, what, self.client.headers, **self._extra())
        self.published.append(document["id"])


class CollectionSummary:
    """The Collection document of every chunk added, folded into one (constant size: extents, value sets)."""

    def __init__(self, collection_id: str) -> None:
        self.collection_id = collection_id
        self.count = 0
        self.document: dict[str, Any] | None = None

    def add(self, entries: list[Entry]) -> None:
        """Fold in the Collection of ``entries`` (the Items as sent)."""
        if not entries:
            return
        chunk = collection_document(entries, self.collection_id, None, None)
        chunk["links"] = []
        self.count += len(entries)
        self.document = chunk if self.document is None else _merged(self.document, chunk)
        self.document["description"] = f"{self.count} machine-learning model(s) described with the MLM extension."


def _merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The Collection covering the Items of both ``first`` and ``second`` (as :func:`collection_document` makes)."""
    merged = dict(first)
    if first["license"] != second["license"]:
        merged["license"] = "other"
    (w1, s1, e1, n1), (w2, s2, e2, n2) = (c["extent"]["spatial"]["bbox"][0] for c in (first, second))
    (start1, end1), (start2, end2) = (c["extent"]["temporal"]["interval"][0] for c in (first, second))
    start = None if start1 is None or start2 is None else min(start1, start2, key=str_to_datetime)
    end = None if end1 is None or end2 is None else max(end1, end2, key=str_to_datetime)
    merged["extent"] = {
        "spatial": {"bbox": [[min(w1, w2), min(s1, s2), max(e1, e2), max(n1, n2)]]},
        "temporal": {"interval": [[start, end]]},
    }
    summaries = dict(first["summaries"])
    for key, value in second["summaries"].items():
        summaries[key] = value if key not in summaries else _merged_summary(summaries[key], value)
    merged["summaries"] = summaries
    return merged


def _merged_summary(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two summaries of one field merged: ranges (minimum/maximum), enums, arrays of enums, band-name objects."""
    if "minimum" in first:
        return {"minimum": min(first["minimum"], second["minimum"]),
                "maximum": max(first["maximum"], second["maximum"])}  # fmt: skip
    if "enum" in first:
        return _enum_schema([*first["enum"], *second["enum"]])
    if first.get("type") == "array" and "enum" in first.get("items", {}):
        return _enum_schema([*first["items"]["enum"], *second["items"]["enum"]], array=True)
    names = sorted({*first["items"]["properties"]["name"]["enum"], *second["items"]["properties"]["name"]["enum"]})
    return {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string", "enum": names}}}}
