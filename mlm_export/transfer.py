"""Artifacts off the local disk and back: upload to object storage, verified download into the cache.

Download (``http(s)://`` through urllib3, ``s3://`` through obstore) streams into the content-addressed cache of
:mod:`mlm_export.artifact_cache`, so nothing reaches a deserialiser before its ``file:size`` and ``file:checksum``
matched. Every transfer is bounded (:mod:`mlm_export.download_limits`): size (``file:size``, else
``max_download_size``), a minimum average rate over a sliding window and an optional total timeout. Rules for
remote hrefs:

- user names or passwords in an href are refused (credentials belong in the environment, never in an Item);
- at most :data:`MAX_REDIRECTS` redirects; a redirect to another host is followed only when it lands on ``https``
  (and a :class:`RedirectWarning` reports it), never from ``https`` down to ``http``;
- ``s3://`` uses the usual ``AWS_*`` environment variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
  ``AWS_ACCESS_KEY_ID``..., ``AWS_ALLOW_HTTP=true`` for a plain-http endpoint).

Upload (:func:`upload_artifacts`) copies each local artifact of an Item to ``s3://bucket/prefix`` or
``file:///dir`` under ``<prefix>/<item id>/<file name>`` (multipart above :data:`MULTIPART_THRESHOLD`) and never
replaces an object that holds different bytes, since an earlier Item may point to it.
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlparse

from mlm_export.artifact_cache import cached_artifact, multihash_of, new_hasher, store_verified
from mlm_export.download_limits import DownloadLimits, Meter, resolve_limits
from mlm_export.errors import (
    ArtifactNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    DownloadError,
    ItemValidationError,
    MissingDependencyError,
    OutputExistsError,
    first_line,
)
from mlm_export.hashing import PROGRESS_THRESHOLD, hash_file

if TYPE_CHECKING:
    import pystac

#: Redirects followed for one download.
MAX_REDIRECTS = 5
#: Seconds to connect, and between two received chunks (at most: the rate window and the total timeout cut it).
TIMEOUT_S = (10.0, 60.0)
#: Largest Item JSON read from a URL.
MAX_ITEM_BYTES = 16 * 1024 * 1024
#: Files above this size are uploaded in parts of :data:`PART_SIZE`.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
#: Largest socket read of an http(s) download.
READ_SIZE = 1024 * 1024
REMOTE_SCHEMES = ("http", "https", "s3")


class RedirectWarning(UserWarning):
    """A download was redirected to another host (reported, allowed only towards https)."""


def is_remote(href: str) -> bool:
    """Whether ``href`` is an absolute URL this module downloads from (``http``, ``https``, ``s3``)."""
    return urlparse(href).scheme in REMOTE_SCHEMES


def check_remote_href(href: str, what: str = "href") -> None:
    """Refuse a remote href with credentials or with no host.

    Raises:
        ConfigurationError: the URL carries a user name/password, has no host or an unsupported scheme.
    """
    parsed = urlparse(href)
    if parsed.scheme not in REMOTE_SCHEMES:
        raise ConfigurationError(f"{what} {href!r} is not an http(s):// or s3:// URL.", hint="Pass such a URL.")
    if parsed.username is not None or parsed.password is not None:
        shown = parsed._replace(netloc=parsed.hostname or "").geturl()
        raise ConfigurationError(
            f"{what} '{shown}' carries credentials in the URL; refused (they would be stored and logged).",
            hint="Remove them from the href; give credentials through the environment (AWS_*, a header, .netrc).",
        )
    if not parsed.hostname:
        raise ConfigurationError(f"{what} {href!r} has no host.", hint="Use scheme://host/path.")


def resolve_href(href: str, base: str | None) -> str:
    """The absolute URL of ``href``, relative hrefs resolved against ``base`` (the Item's own URL)."""
    if is_remote(href) or base is None:
        return href
    if urlparse(base).scheme == "s3":  # urljoin leaves schemes it does not know unresolved
        return "s3" + urljoin("https" + base[2:], href)[len("https") :]
    return urljoin(base, href)


def fetch_artifact(
    href: str,
    *,
    size: int | None,
    checksum: str | None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    limits: DownloadLimits | None = None,
) -> Path:
    """Return the verified local copy of the remote artifact ``href``, downloading it into the cache when needed.

    Args:
        href: ``http(s)://`` or ``s3://`` URL.
        size: the ``file:size`` the Item records (checked; ``None`` when the Item has none).
        checksum: the ``file:checksum`` the Item records; required, it names and verifies the cache entry.
        cache_dir: cache directory (default: ``$MLM_EXPORT_CACHE_DIR`` or the user cache).
        progress: progress bar; ``None`` shows one above 100 MB when stderr is a terminal.
        limits: the bounds of the transfer (default: :meth:`DownloadLimits.of`, 16 GiB, environment included).

    Raises:
        ItemValidationError: the asset has no ``file:checksum`` (a remote file could not be verified), or a
            ``file:size``/``file:checksum`` of the wrong type.
        DownloadLimitError: a bound was hit: over ``max_download_size``, slower than the minimum rate, past
            ``download_timeout`` (nothing is cached).
        ConfigurationError: the href carries credentials or is not a supported URL.
        ArtifactNotFoundError: the server answers 404 / the object does not exist.
        ChecksumMismatchError: the bytes differ from ``file:size``/``file:checksum`` (nothing is cached).
        DownloadError: unreachable server, other HTTP errors, a refused redirect.
    """
    check_remote_href(href)
    _check_file_fields(href, size, checksum)
    if not checksum:
        raise ItemValidationError(
            f"The remote artifact '{href}' has no file:checksum, so its bytes cannot be verified; not downloading.",
            hint="Ask the publisher for an Item with file:checksum, or download and check the file yourself.",
        )
    cached = cached_artifact(checksum, size, cache_dir)
    if cached is not None:
        return cached
    meter = resolve_limits(limits).meter(href)
    meter.check_size(size, "is, as its Item records in file:size,")
    with _remote_chunks(href, meter, meter.bound(size)) as (chunks, announced):
        if size is not None and announced is not None and announced != size:
            raise ChecksumMismatchError(
                f"'{href}' is {announced} bytes but its Item records file:size {size}; not downloading.",
                hint="The remote file differs from the Item: ask its publisher.",
            )
        meter.check_size(announced, "announces")
        total = size if size is not None else announced
        with _progress(total, href, progress) as on_chunk:
            return store_verified(
                chunks, checksum=checksum, size=size, source=href, cache_dir=cache_dir, on_chunk=on_chunk
            )


def _check_file_fields(href: str, size: Any, checksum: Any) -> None:
    """Refuse a ``file:size`` that is not a non-negative integer and a ``file:checksum`` that is not a string."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ItemValidationError(
            f"The asset '{href}' has file:size {size!r}; it must be a non-negative integer number of bytes.",
            hint="The Item is malformed: run `mlm-export validate` on it and ask its publisher.",
        )
    if checksum is not None and not isinstance(checksum, str):
        raise ItemValidationError(
            f"The asset '{href}' has file:checksum {checksum!r}; it must be a multihash string.",
            hint="The Item is malformed: run `mlm-export validate` on it and ask its publisher.",
        )


@contextmanager
def _remote_chunks(href: str, meter: Meter, bound: int | None) -> Iterator[tuple[Iterator[bytes], int | None]]:
    """The body of ``href`` as chunks counted by ``meter``, with its announced length.

    An http(s) body is read in single socket reads of at most ``bound + 1`` bytes in all, so that a byte beyond
    the bound is seen without reading further, and a trickle is measured as it comes.
    """
    if urlparse(href).scheme == "s3":
        with _s3_chunks(href, meter) as result:
            yield result
        return
    urllib3 = _import_urllib3()
    with _http_response(href, meter) as response:
        length = response.headers.get("content-length")
        chunks = _http_body(response, meter, bound, urllib3.exceptions.HTTPError)
        yield chunks, int(length) if length and length.isdigit() else None


def _http_body(response: Any, meter: Meter, bound: int | None, errors: type[Exception]) -> Iterator[bytes]:
    """The raw body of ``response``, one socket read per chunk, each counted by ``meter``."""
    while True:
        want = READ_SIZE if bound is None else max(1, min(READ_SIZE, bound + 1 - meter.received))
        try:
            chunk = response.read1(want, decode_content=False)
        except errors as exc:
            raise meter.stalled() or DownloadError(
                f"Download of '{meter.url}' failed midway: {exc}.", hint="Try again."
            ) from exc
        if not chunk:
            if meter.interrupted:
                raise meter.timeout_error()
            return
        meter.add(len(chunk))
        yield chunk


def _pool(url: str, pools: dict[str | None, Any]) -> Any:
    """A urllib3 pool for ``url``: through the proxy the environment names for it (``https_proxy``, ``no_proxy``...)."""
    import urllib.request

    urllib3 = _import_urllib3()
    parsed = urlparse(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and urllib.request.proxy_bypass(parsed.hostname or ""):
        proxy = None
    if proxy not in pools:
        pools[proxy] = urllib3.ProxyManager(proxy) if proxy else urllib3.PoolManager()
    return pools[proxy]


@contextmanager
def _http_response(url: str, meter: Meter) -> Iterator[Any]:
    """A streamed 200 response (``urllib3.BaseHTTPResponse``) for ``url``, following redirects by the host rule.

    urllib3 rather than httpx for artifact bodies: its ``stream(READ_SIZE)`` reads the socket in 1 MiB blocks through
    its public API (httpx/httpcore read 64 KiB at a time, which costs about half as much CPU again as the hashing).
    Each wait is cut to the time ``meter`` leaves; past the total timeout, a timer shuts the socket so that a read
    blocked in the middle of the body returns.
    """
    urllib3 = _import_urllib3()
    pools: dict[str | None, Any] = {}
    current = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            meter.check_time()
            timeout = urllib3.Timeout(connect=meter.read_timeout(TIMEOUT_S[0]), read=meter.read_timeout(TIMEOUT_S[1]))
            try:
                response = _pool(current, pools).request(
                    "GET", current, headers={"Accept-Encoding": "identity"}, preload_content=False,
                    decode_content=False, redirect=False, retries=False, timeout=timeout,
                )  # fmt: skip
            except urllib3.exceptions.HTTPError as exc:
                raise meter.stalled() or DownloadError(
                    f"Cannot reach '{current}': {exc}.", hint="Check the URL and that the server is up."
                ) from exc
            try:
                if response.get_redirect_location():
                    current = _follow(current, response.headers.get("location", ""), url)
                    continue
                _raise_for_status(response.status, response.reason, current)
                with _deadline(response, meter):
                    yield response
                return
            finally:
                response.close()
    finally:
        for pool in pools.values():
            pool.clear()
    raise DownloadError(f"'{url}' redirects more than {MAX_REDIRECTS} times.", hint="Check the URL.")


@contextmanager
def _deadline(response: Any, meter: Meter) -> Iterator[None]:
    """Shut ``response``'s socket when ``meter``'s total timeout passes (a blocked read then returns)."""
    if meter.deadline is None:
        yield
        return

    def cut() -> None:
        meter.interrupted = True
        try:
            response.shutdown()
        except (OSError, ValueError, RuntimeError):
            pass  # already closed or released: nothing blocks on it

    timer = threading.Timer(meter.remaining() or 0.0, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _follow(current: str, location: str, original: str) -> str:
    """The next URL of a redirect from ``current``, or a DownloadError when the host rule refuses it."""
    target = urljoin(current, location)
    here, there = urlparse(current), urlparse(target)
    if there.scheme not in ("http", "https") or not there.hostname:
        raise DownloadError(f"'{original}' redirects to {target!r}, not http(s); refused.", hint="Check the URL.")
    if there.username is not None or there.password is not None:
        raise DownloadError(
            f"'{original}' redirects to a URL with credentials (host {there.hostname}); refused.",
            hint="Ask the server's operator; credentials never travel in URLs.",
        )
    if here.scheme == "https" and there.scheme != "https":
        raise DownloadError(
            f"'{original}' redirects from https to plain http ({target}); refused.", hint="Use an https URL."
        )
    if here.hostname != there.hostname:
        if there.scheme != "https":
            raise DownloadError(
                f"'{original}' redirects to another host over plain http ({target}); refused.",
                hint="Only redirects to https are followed across hosts: use the final URL if you trust it.",
            )
        warnings.warn(f"'{original}' redirected to another host: {target}", RedirectWarning, stacklevel=6)
    return target


def _raise_for_status(status: int, reason: str | None, url: str) -> None:
    if status == 404:
        raise ArtifactNotFoundError(f"'{url}' does not exist (HTTP 404).", hint="Check the href in the Item.")
    if status in (401, 403):
        raise DownloadError(f"'{url}' needs authorisation (HTTP {status}).", hint="The file is not public.")
    if status != 200:
        raise DownloadError(f"'{url}' answered HTTP {status} {reason or ''}".rstrip() + ".", hint="Try again later.")


@contextmanager
def _s3_chunks(href: str, meter: Meter) -> Iterator[tuple[Iterator[bytes], int | None]]:
    obstore, exceptions = _import_obstore()
    meter.check_time()
    store, key = _store_for(href, timeout=meter.remaining())
    try:
        result = obstore.get(store, key)
    except (FileNotFoundError, exceptions.NotFoundError) as exc:
        raise ArtifactNotFoundError(f"'{href}' does not exist.", hint="Check the href in the Item.") from exc
    except exceptions.BaseError as exc:
        raise meter.stalled() or DownloadError(
            f"Cannot read '{href}': {first_line(exc, limit=None)}", hint="Check AWS_* settings."
        ) from exc
    yield _s3_guarded(result.stream(min_chunk_size=PART_SIZE), meter, exceptions), result.meta["size"]


def _s3_guarded(stream: Iterator[Any], meter: Meter, exceptions: Any) -> Iterator[bytes]:
    try:
        for chunk in stream:
            meter.add(len(chunk))
            yield bytes(chunk)
    except exceptions.BaseError as exc:
        raise meter.stalled() or DownloadError(
            f"Download of '{meter.url}' failed midway: {first_line(exc, limit=None)}", hint="Try again."
        ) from exc


def fetch_item_document(url: str, *, limits: DownloadLimits | None = None) -> dict[str, Any]:
    """The JSON object at ``url`` (an Item read from a STAC API or a static catalog), size-capped.

    Args:
        url: the Item's ``http(s)://`` or ``s3://`` URL.
        limits: the bounds of the transfer (rate, total timeout; the size is at most :data:`MAX_ITEM_BYTES`).

    Raises:
        ConfigurationError / ArtifactNotFoundError / DownloadError / DownloadLimitError: as :func:`fetch_artifact`.
        ItemValidationError: the body is not a JSON object.
    """
    check_remote_href(url, "Item URL")
    meter = resolve_limits(limits).meter(url)
    with _remote_chunks(url, meter, MAX_ITEM_BYTES) as (chunks, _):
        body = bytearray()
        for chunk in chunks:
            body += chunk
            if len(body) > MAX_ITEM_BYTES:
                raise ItemValidationError(f"Item '{url}' is larger than {MAX_ITEM_BYTES} bytes.", hint="Not an Item?")
    from mlm_export.stac.io import parse_json

    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ItemValidationError(f"Item '{url}' is not UTF-8 JSON: {exc}.", hint="Pass the URL of an Item.") from exc
    document = parse_json(text, f"Item '{url}'", max_bytes=MAX_ITEM_BYTES)  # strict: no NaN, no duplicate keys
    if not isinstance(document, dict):
        raise ItemValidationError(f"Item '{url}' is not a JSON object.", hint="Pass the URL of an Item.")
    return document


def self_url(document: Mapping[str, Any]) -> str | None:
    """The remote ``self`` link of an Item document (how a STAC API Item says where it lives), if any."""
    for link in document.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "self" and is_remote(str(link.get("href", ""))):
            return str(link["href"])
    return None


def upload_artifacts(
    item: pystac.Item | Mapping[str, Any],
    item_dir: str | os.PathLike[str] | None,
    upload_to: str,
    *,
    public_url: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Copy every local artifact of ``item`` to object storage and return the Item dict with hrefs rewritten.

    Each asset whose href is a local path (relative ones resolve against ``item_dir``) is checked against its
    ``file:size``/``file:checksum`` and copied to ``<upload_to>/<item id>/<file name>``. An object already there
    with the same bytes is kept (the upload is skipped); one with different bytes is never replaced.

    Args:
        item: the Item (dict or ``pystac.Item``); it is not modified.
        item_dir: directory that relative hrefs are relative to (the Item JSON's directory).
        upload_to: ``s3://bucket/prefix`` (credentials and endpoint from ``AWS_*``) or ``file:///dir``.
        public_url: public URL of ``upload_to`` (e.g. ``https://bucket.s3.amazonaws.com/prefix``); the hrefs start
            with it instead of ``upload_to``.
        progress: progress bars; ``None`` shows them above 100 MB when stderr is a terminal.

    Returns:
        A new Item dict whose local asset hrefs point at the uploaded objects.

    Raises:
        ConfigurationError: ``upload_to`` is not an s3:// or file:// URL, or carries credentials.
        ArtifactNotFoundError: a local artifact is missing (nothing is uploaded).
        ChecksumMismatchError: a local file differs from its ``file:size``/``file:checksum`` (nothing is uploaded).
        OutputExistsError: the destination holds different bytes.
        DownloadError: the storage refused or failed.
    """
    document = copy.deepcopy(item.to_dict(include_self_link=False) if hasattr(item, "to_dict") else dict(item))
    scheme = urlparse(upload_to).scheme
    if scheme not in ("s3", "file"):
        raise ConfigurationError(f"upload_to {upload_to!r} is not s3:// or file://.", hint="e.g. s3://bucket/models")
    if scheme == "s3":
        check_remote_href(upload_to, "upload_to")
    item_id = str(document.get("id") or "item")
    planned = [(key, path, f"{item_id}/{path.name}") for key, path in _local_artifacts(document, item_dir)]
    store, prefix = _store_for(upload_to.rstrip("/") + "/", mkdir=True)
    base = (public_url or upload_to).rstrip("/")
    for key, path, name in planned:
        _upload_one(store, path, prefix + name, f"{upload_to.rstrip('/')}/{name}", progress)
        document["assets"][key]["href"] = f"{base}/{name}"
    return document


def _local_artifacts(document: Mapping[str, Any], item_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """(asset key, file) of every local asset, each checked against file:size/file:checksum."""
    found = []
    for key, asset in (document.get("assets") or {}).items():
        href = str(asset.get("href", ""))
        parsed = urlparse(href)
        if parsed.scheme not in ("", "file"):
            continue
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(href)
        if not path.is_absolute():
            if item_dir is None:
                raise ConfigurationError(f"Asset {key!r} has the relative href {href!r}.", hint="Pass item_dir.")
            path = Path(item_dir) / path
        if not path.is_file():
            raise ArtifactNotFoundError(f"Asset {key!r}: '{path}' does not exist; nothing uploaded.", hint="Check it.")
        digest = hash_file(path)
        for field, actual in (("file:size", digest.size), ("file:checksum", digest.checksum)):
            if asset.get(field) is not None and asset[field] != actual:
                raise ChecksumMismatchError(
                    f"Asset {key!r}: '{path}' has {field} {actual}, the Item records {asset[field]}; nothing uploaded.",
                    hint="The file changed since the export: export the Item again.",
                )
        found.append((key, path))
    return found


def _upload_one(store: Any, path: Path, name: str, url: str, progress: bool | None) -> None:
    obstore, exceptions = _import_obstore()
    size = path.stat().st_size
    if _same_object_exists(store, name, path, url):
        return
    try:
        if size <= MULTIPART_THRESHOLD:
            obstore.put(store, name, path.read_bytes(), mode="create")
        else:
            with _progress(size, url, progress) as on_chunk:
                obstore.put(store, name, _file_parts(path, on_chunk), chunk_size=PART_SIZE, use_multipart=True)
    except (FileExistsError, exceptions.AlreadyExistsError):
        if not _same_object_exists(store, name, path, url):
            raise
    except exceptions.BaseError as exc:
        raise DownloadError(
            f"Upload to '{url}' failed: {first_line(exc, limit=None)}", hint="Check AWS_* settings."
        ) from exc


def _same_object_exists(store: Any, name: str, path: Path, url: str) -> bool:
    """True when ``name`` exists with the bytes of ``path``; OutputExistsError when it holds other bytes."""
    obstore, exceptions = _import_obstore()
    try:
        meta = obstore.head(store, name)
    except (FileNotFoundError, exceptions.NotFoundError):
        return False
    except exceptions.BaseError as exc:
        raise DownloadError(
            f"Cannot read '{url}': {first_line(exc, limit=None)}", hint="Check AWS_* settings."
        ) from exc
    local = hash_file(path).checksum
    same = meta["size"] == path.stat().st_size
    if same:
        hasher = new_hasher(local)
        for chunk in obstore.get(store, name).stream(min_chunk_size=PART_SIZE):
            hasher.update(chunk)
        same = multihash_of(hasher, local) == local
    if not same:
        raise OutputExistsError(
            f"'{url}' already exists with other bytes than '{path}'; not replacing it (an Item may point to it).",
            hint="Upload under another prefix, or give the new model another Item id.",
        )
    return True


def _file_parts(path: Path, on_chunk: Callable[[int], None] | None) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        while chunk := stream.read(PART_SIZE):
            if on_chunk is not None:
                on_chunk(len(chunk))
            yield chunk


def _store_for(url: str, *, mkdir: bool = False, timeout: float | None = None) -> tuple[Any, str]:
    """An obstore store for the bucket (or directory) of ``url`` and the key of ``url`` in it.

    ``timeout``: seconds for each whole request (s3), the body included.
    """
    _import_obstore()
    from obstore.store import LocalStore, S3Store

    parsed = urlparse(url)
    if parsed.scheme == "file":
        directory = Path(unquote(parsed.path))
        if mkdir:
            directory.mkdir(parents=True, exist_ok=True)
        return LocalStore(directory), ""
    if timeout is None:
        return S3Store(parsed.netloc), unquote(parsed.path.lstrip("/"))
    import datetime

    options: dict[str, Any] = {"timeout": datetime.timedelta(seconds=timeout)}
    if os.environ.get("AWS_ALLOW_HTTP"):  # client options given replace those read from the environment
        options["allow_http"] = os.environ["AWS_ALLOW_HTTP"]
    return S3Store(parsed.netloc, client_options=options), unquote(parsed.path.lstrip("/"))


@contextmanager
def _progress(total: int | None, url: str, show: bool | None) -> Iterator[Callable[[int], None] | None]:
    import sys

    if show is None:
        show = total is not None and total > PROGRESS_THRESHOLD and sys.stderr.isatty()
    if not show:
        yield None
        return
    from tqdm import tqdm

    name = urlparse(url).path.rsplit("/", 1)[-1] or url
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False) as bar:
        yield bar.update


def _import_urllib3() -> Any:
    try:
        import urllib3
    except ImportError as exc:
        raise MissingDependencyError("Downloading http(s) artifacts needs urllib3.", hint=_EXTRA) from exc
    return urllib3


def _import_obstore() -> tuple[Any, Any]:
    try:
        import obstore
        from obstore import exceptions
    except ImportError as exc:
        raise MissingDependencyError("s3:// and file:// transfers need obstore.", hint=_EXTRA) from exc
    return obstore, exceptions


_EXTRA = "pip install 'mlm-export[remote]'"

__all__ = [
    "DownloadError",
    "RedirectWarning",
    "check_remote_href",
    "fetch_artifact",
    "fetch_item_document",
    "is_remote",
    "resolve_href",
    "self_url",
    "upload_artifacts",
]
