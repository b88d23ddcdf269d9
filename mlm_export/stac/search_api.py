"""The STAC API backend of :func:`mlm_export.stac.search.search`: pystac-client, CQL2 pushed down, the rest in-process.

What the server can filter is sent as cql2-json through pystac-client (``POST /search``): the bbox (unless it
crosses the antimeridian), the datetime interval, each asked task as ``a_overlaps("mlm:tasks", [task, its specific
forms])``, and the user's ``filter`` when it names only top-level properties. When the server has the computed
filters of :mod:`mlm_export.stac.api_index` (its ``/queryables`` lists their marker queryables, read once per
search: the local API registers them), the band names, channel counts and framework go too, each a GIN-indexed
superset of the in-process rule, so a search reads about as many Items as it has hits. Each of these is a superset
of our rule (the server's bbox test counts edge contact, our matching does not), so the hits are then checked again
by the same :func:`~mlm_export.stac.matching.match` the embedded backend uses, which also applies what was not sent
(on a foreign server: band names and channel counts inside ``mlm:input``, the framework compared without case or
punctuation and on assets, nested filter paths). There, when the server has the Fields extension, the pages leave
out what matching never reads (:data:`UNREAD_FIELDS`). Pages are matched as they come: only hits are kept.

Against a hostile server (see :class:`BoundedSession`): the caller's ``headers`` go only to the origin (scheme,
host, port) of ``url``; a ``search`` or ``next`` link or a redirect to another origin gets none of them. Pages are
streamed (each is matched, then dropped), and the search is bounded in pages, Items, bytes per answer and time;
every request has a timeout. A bound hit is a :class:`~mlm_export.errors.SearchLimitError` naming it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from pystac.utils import datetime_to_str

from mlm_export.errors import AuthenticationError, MissingDependencyError, SearchLimitError, STACAPIError
from mlm_export.stac import api_index
from mlm_export.stac.entries import Entry
from mlm_export.stac.matching import TASK_FAMILIES, Query, framework_key

#: Items per page asked from the server.
PAGE_SIZE = 500
#: Default bounds of one search (the caller can raise them: ``max_pages=``, ``max_items=``, ``max_time=``).
MAX_PAGES = 200
MAX_ITEMS = 20_000
MAX_TIME_S = 300.0
#: Seconds one request may wait to connect or between two reads; bytes one answer may hold.
REQUEST_TIMEOUT_S = 60.0
MAX_ANSWER_BYTES = 64 * 2**20
#: Item fields that matching and :class:`~mlm_export.stac.matching.SearchHit` never read, left out of the pages of
#: a server with the Fields extension when the query has no ``filter`` (which may read any field).
UNREAD_FIELDS = ("properties.mlm:output", "properties.mlm:hyperparameters", "stac_extensions")


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


def server_filter(query: Query, computed: bool = False) -> dict[str, Any] | None:
    """The part of ``query`` a pgstac server can filter, as cql2-json (bbox and datetime go as parameters).

    ``computed``: the server has the computed filters of :mod:`mlm_export.stac.api_index` (bands, channels,
    framework).
    """
    clauses: list[dict[str, Any]] = []
    if computed and query.bands is not None:
        clauses.append(api_index.band_filter(query.bands))
    if computed and query.input_channels is not None:
        clauses.append(api_index.channels_filter(query.input_channels))
    if computed and query.framework is not None:
        clauses.append(api_index.framework_filter(framework_key(query.framework)))
    for task in query.tasks or ():
        clauses.append({"op": "a_overlaps", "args": [{"property": "mlm:tasks"}, [task, *TASK_FAMILIES.get(task, ())]]})
    if query.filter is not None:
        expression = query.filter.to_json()
        if all("." not in name for name in _properties(expression)):
            clauses.append(expression)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"op": "and", "args": clauses}


def server_parameters(query: Query, computed: bool = False) -> dict[str, Any]:
    """``bbox``, ``datetime`` and ``filter`` arguments of ``pystac_client.Client.search`` for ``query``."""
    parameters: dict[str, Any] = {}
    if query.bbox is not None and query.bbox.geom_type != "MultiPolygon":  # across the antimeridian: in-process
        parameters["bbox"] = list(query.bbox.bounds)
    if query.interval is not None and any(v is not None for v in query.interval):
        start, end = query.interval
        parameters["datetime"] = "/".join(datetime_to_str(v) if v is not None else ".." for v in (start, end))
    expression = server_filter(query, computed)
    if expression is not None:
        parameters["filter"] = expression
        parameters["filter_lang"] = "cql2-json"
    return parameters


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, lower-cased, the port made explicit for http(s)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


class _Bounds:
    """The limits of one search and its deadline; :meth:`exceeded` builds the error naming a bound."""

    def __init__(self, url: str, max_pages: int, max_items: int, max_time: float) -> None:
        self.url, self.max_pages, self.max_items, self.max_time = url, max_pages, max_items, max_time
        self.deadline = time.monotonic() + max_time
        self.hit: SearchLimitError | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def exceeded(self, what: str, argument: str, cli: str) -> SearchLimitError:
        hint = f"Narrow the query (bbox, datetime, tasks, collections, filter) or raise {argument}= (CLI: {cli})."
        if not argument:
            hint = "No page of Items needs that much; check that the URL is a STAC API."
        self.hit = SearchLimitError(f"The search of the STAC API at {self.url} stopped: {what}.", hint=hint)
        return self.hit

    def out_of_time(self) -> SearchLimitError:
        return self.exceeded(f"it took more than max_time={self.max_time:g} s", "max_time", "--max-time")


def bounded_session(api_url: str, headers: Mapping[str, str], bounds: _Bounds) -> Any:
    """A ``requests.Session`` for pystac-client: ``headers`` to the origin of ``api_url`` only, every request bounded.

    ``headers`` are added when a request to that origin is prepared and removed on a redirect to another origin
    (requests itself drops only ``Authorization`` there, and pystac-client follows ``search``/``next`` links with
    the session). Each request times out, reads at most :data:`MAX_ANSWER_BYTES` and stops at the deadline.
    """
    import requests

    class BoundedSession(requests.Session):
        """Origin-bound headers, bounded requests (see :func:`bounded_session`)."""

        home = origin(api_url)
        secrets = {str(k): str(v) for k, v in headers.items()}

        def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
            prepared = super().prepare_request(request)
            if prepared.url is not None and origin(prepared.url) == self.home:
                prepared.headers.update(self.secrets)
            return prepared

        def rebuild_auth(self, prepared: requests.PreparedRequest, response: requests.Response) -> None:
            super().rebuild_auth(prepared, response)
            if prepared.url is None or origin(prepared.url) != self.home:
                for name in self.secrets:
                    prepared.headers.pop(name, None)

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            remaining = bounds.remaining()
            if remaining <= 0:
                raise bounds.out_of_time()
            wait = min(REQUEST_TIMEOUT_S, remaining)
            response = super().send(request, **{**kwargs, "timeout": (wait, wait), "stream": True})
            if response._content is False:  # not read yet (a redirect's hops were read by their own send)
                response._content = _read_body(response, f"{request.method} {request.url}", bounds)
                response._content_consumed = True
            return response

    return BoundedSession()


def _read_body(response: Any, what: str, bounds: _Bounds) -> bytes:
    """The body of the streamed ``response``, read as it comes (``read1``), within the size cap and the deadline."""
    body = bytearray()
    try:
        while chunk := response.raw.read1(2**16, decode_content=True):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise bounds.exceeded(f"{what} answered more than {MAX_ANSWER_BYTES} bytes", "", "")
            if bounds.remaining() <= 0:
                raise bounds.out_of_time()
    finally:
        response.close()
    return bytes(body)


def _error(url: str, exc: Exception) -> STACAPIError:
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return AuthenticationError(
            f"The STAC API at {url} refused the search ({status}): authentication is needed.",
            status=status,
            hint="Pass headers={'Authorization': ...} (CLI: --header).",
        )
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    hint = "Check the URL and that the server runs (make stac-api starts a local one)."
    return STACAPIError(f"The STAC API at {url} could not be searched: {text}", status=status, hint=hint)


def api_entries(
    url: str,
    query: Query,
    *,
    collections: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_pages: int = MAX_PAGES,
    max_items: int = MAX_ITEMS,
    max_time: float = MAX_TIME_S,
) -> Iterator[Entry]:
    """The Items of the STAC API at ``url`` that the server-side part of ``query`` lets through, page by page.

    Each page is handed out as it arrives (nothing is kept here). ``headers`` go to ``url``'s origin only.

    Raises:
        SearchLimitError: the server has more than ``max_pages`` pages or ``max_items`` Items for the query, one
            answer is larger than :data:`MAX_ANSWER_BYTES`, or the search takes longer than ``max_time`` seconds.
        STACAPIError: the server is unreachable or answers with an error (AuthenticationError for 401/403).
        MissingDependencyError: pystac-client is not installed.
    """
    try:
        import requests
        from pystac_client import Client
        from pystac_client.exceptions import APIError
        from pystac_client.stac_api_io import StacApiIO
    except ImportError as exc:
        raise MissingDependencyError(
            f"Searching a STAC API needs pystac-client ({exc}).", hint="pip install 'mlm-export[api]'"
        ) from exc
    bounds = _Bounds(url, max_pages, max_items, max_time)
    stac_io = StacApiIO()
    stac_io.session = bounded_session(url, headers or {}, bounds)
    pages = items = 0
    try:
        client = Client.open(url, stac_io=stac_io)
        inside = query.bands is not None or query.input_channels is not None or query.framework is not None
        computed = inside and has_computed_filters(stac_io.session, url)
        parameters = server_parameters(query, computed)
        if not computed and query.filter is None and client.conforms_to("FIELDS"):
            parameters["fields"] = [f"-{name}" for name in UNREAD_FIELDS]
        search = client.search(collections=list(collections) if collections else None, limit=PAGE_SIZE, **parameters)
        for page in search.pages_as_dicts():
            pages += 1
            features = page.get("features") or []
            items += len(features)
            if pages > max_pages:
                raise bounds.exceeded(f"it has more than max_pages={max_pages} pages of hits", "max_pages",
                                      "--max-pages")  # fmt: skip
            if items > max_items:
                raise bounds.exceeded(f"it has more than max_items={max_items} Items", "max_items", "--max-items")
            yield from (_entry(document, url) for document in features if isinstance(document, Mapping))
    except (APIError, requests.RequestException, OSError) as exc:
        if bounds.hit is not None:
            raise bounds.hit from None
        if bounds.remaining() <= 0:
            raise bounds.out_of_time() from None
        raise _error(url, exc) from None


def has_computed_filters(session: Any, url: str) -> bool:
    """Whether the STAC API at ``url`` lists the marker queryables of :mod:`mlm_export.stac.api_index`.

    One ``GET /queryables`` (through the bounded ``session``); an error or another answer means no.
    """
    import requests

    try:
        answer = session.get(url.rstrip("/") + "/queryables", headers={"Accept": "application/schema+json"})
        properties = answer.json().get("properties") if answer.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return False
    if not isinstance(properties, Mapping):
        return False
    return all(
        isinstance(properties.get(name), Mapping) and "mlm-export" in str(properties[name].get("title"))
        for name in api_index.QUERYABLES
    )


def _entry(document: Mapping[str, Any], url: str) -> Entry:
    links = document.get("links")
    self_href = next(
        (link.get("href") for link in links if isinstance(link, Mapping) and link.get("rel") == "self"), None
    ) if isinstance(links, list) else None  # fmt: skip
    return Entry(dict(document), f"item {document.get('id')!r} of {url}", None, self_href)
