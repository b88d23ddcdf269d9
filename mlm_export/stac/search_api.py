"""The STAC API backend of :func:`mlm_export.stac.search.search`: pystac-client, CQL2 pushed down, the rest in-process.

What the server can filter is sent as cql2-json through pystac-client (``POST /search``): the bbox (unless it
crosses the antimeridian), the datetime interval, each asked task as ``a_overlaps("mlm:tasks", [task, its specific
forms])``, and the user's ``filter`` when it names only top-level properties. Each of these is a superset of our
rule (the server's bbox test counts edge contact, our matching does not), so the hits are then checked again by the
same :func:`~mlm_export.stac.matching.match` the embedded backend uses, which also applies what pgstac cannot
filter: band names and channel counts inside ``mlm:input`` (arrays of objects), the framework compared without
case or punctuation and on assets, and nested filter paths. Every page of hits is read before ranking.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pystac.utils import datetime_to_str

from mlm_export.errors import AuthenticationError, MissingDependencyError, STACAPIError
from mlm_export.stac.entries import Entry
from mlm_export.stac.matching import TASK_FAMILIES, Query

#: Items per page asked from the server.
PAGE_SIZE = 500


def _properties(node: Any) -> Iterator[str]:
    """Every property name a cql2-json expression reads."""
    if isinstance(node, Mapping):
        if "property" in node and isinstance(node["property"], str):
            yield node["property"]
        for value in node.values():
            yield from _properties(value)
    elif isinstance(node, list):
        for value in node:
            yield from _properties(value)


def server_filter(query: Query) -> dict[str, Any] | None:
    """The part of ``query`` a pgstac server can filter, as cql2-json (bbox and datetime go as parameters)."""
    clauses: list[dict[str, Any]] = []
    for task in query.tasks or ():
        clauses.append({"op": "a_overlaps", "args": [{"property": "mlm:tasks"}, [task, *TASK_FAMILIES.get(task, ())]]})
    if query.filter is not None:
        expression = query.filter.to_json()
        if all("." not in name for name in _properties(expression)):
            clauses.append(expression)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"op": "and", "args": clauses}


def server_parameters(query: Query) -> dict[str, Any]:
    """``bbox``, ``datetime`` and ``filter`` arguments of ``pystac_client.Client.search`` for ``query``."""
    parameters: dict[str, Any] = {}
    if query.bbox is not None and query.bbox.geom_type != "MultiPolygon":  # across the antimeridian: in-process
        parameters["bbox"] = list(query.bbox.bounds)
    if query.interval is not None and any(v is not None for v in query.interval):
        start, end = query.interval
        parameters["datetime"] = "/".join(datetime_to_str(v) if v is not None else ".." for v in (start, end))
    expression = server_filter(query)
    if expression is not None:
        parameters["filter"] = expression
        parameters["filter_lang"] = "cql2-json"
    return parameters


def _error(url: str, exc: Exception) -> STACAPIError:
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return AuthenticationError(
            f"The STAC API at {url} refused the search ({status}): authentication is needed.",
            status=status,
            hint="Pass headers={'Authorization': ...} (CLI: --header, or $MLM_EXPORT_STAC_HEADERS).",
        )
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    hint = "Check the URL and that the server runs (make stac-api starts a local one)."
    return STACAPIError(f"The STAC API at {url} could not be searched: {text}", status=status, hint=hint)


def api_entries(
    url: str, query: Query, *, collections: Sequence[str] | None = None, headers: Mapping[str, str] | None = None
) -> list[Entry]:
    """Every Item of the STAC API at ``url`` that the server-side part of ``query`` lets through, all pages read.

    Raises:
        STACAPIError: the server is unreachable or answers with an error (AuthenticationError for 401/403).
        MissingDependencyError: pystac-client is not installed.
    """
    try:
        import requests
        from pystac_client import Client
        from pystac_client.exceptions import APIError
    except ImportError as exc:
        raise MissingDependencyError(
            f"Searching a STAC API needs pystac-client ({exc}).", hint="pip install 'mlm-export[api]'"
        ) from exc
    try:
        client = Client.open(url, headers=dict(headers or {}))
        search = client.search(
            collections=list(collections) if collections else None, limit=PAGE_SIZE, **server_parameters(query)
        )
        documents = list(search.items_as_dicts())
    except (APIError, requests.RequestException, OSError) as exc:
        raise _error(url, exc) from None
    entries = []
    for document in documents:
        self_href = next((link.get("href") for link in document.get("links") or [] if link.get("rel") == "self"), None)
        entries.append(Entry(document, f"item {document.get('id')!r} of {url}", None, self_href))
    return entries
