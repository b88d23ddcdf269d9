"""Reading untrusted STAC documents and resolving their hrefs: the one place that does either.

* :func:`parse_json` refuses documents over a size cap (``max_bytes``, default from
  ``$MLM_EXPORT_MAX_JSON_BYTES`` or 64 MiB), duplicate keys, ``NaN``/``Infinity`` and nesting deep enough to
  exhaust the stack, each as :class:`ItemValidationError` naming the place.
* :func:`read_item_document` reads an Item (or Collection/Catalog) from a path, a ``file://`` URL, a dict or a
  pystac object, and returns the directory its relative hrefs resolve against.
* :func:`structure_problems` checks the shapes later code relies on (assets an object of objects with string
  hrefs, links a list, tensors with integer shapes and a ``dim_order`` per dimension...) and returns JSON pointers.
* :func:`resolve_href` classifies an href: ``local`` (a file inside the Item's directory or an allowed one),
  ``outside`` (a local file anywhere else, symlinks followed), ``remote`` (http/https/s3/gs/az), ``registry`` (any
  other scheme, e.g. ``hf://``) or ``unresolved`` (relative, but the Item has no location).
* :func:`encode_href`/:func:`decode_href`: local hrefs are percent-encoded when written and decoded when read.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlparse

from mlm_export.errors import ConfigurationError, ItemValidationError, MLMExportError

MAX_JSON_ENV = "MLM_EXPORT_MAX_JSON_BYTES"
DEFAULT_MAX_JSON_BYTES = 64 * 1024 * 1024
REMOTE_SCHEMES = frozenset({"http", "https", "s3", "gs", "gcs", "az", "abfs", "abfss"})
#: Characters left as they are in an encoded local href: RFC 3986 unreserved and the path characters it allows
#: unencoded (sub-delims and '@'; ':' is encoded so that no first segment reads as a scheme).
_SAFE_HREF_CHARS = "/._-~!$&'()*+,;=@"
HrefKind = Literal["local", "outside", "remote", "registry", "unresolved"]


def max_json_bytes(max_bytes: int | None = None) -> int:
    """The JSON size cap: ``max_bytes``, else ``$MLM_EXPORT_MAX_JSON_BYTES``, else 64 MiB."""
    if max_bytes is not None:
        return max_bytes
    value = os.environ.get(MAX_JSON_ENV)
    if not value:
        return DEFAULT_MAX_JSON_BYTES
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigurationError(f"${MAX_JSON_ENV}={value!r} is not a number of bytes.") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (non-finite numbers are not allowed)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)  # in C; a duplicate key shows as fewer members than pairs
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in one object")
            seen.add(key)
    return document


def parse_json(
    data: str | bytes,
    where: str,
    *,
    error: type[MLMExportError] = ItemValidationError,
    max_bytes: int | None = None,
) -> Any:
    """Parse untrusted JSON strictly.

    Raises:
        MLMExportError: ``error`` naming ``where``: over the size cap, not JSON, a duplicate key, NaN/Infinity, or
            nested too deeply.
    """
    limit = max_json_bytes(max_bytes)
    if len(data) > limit:
        raise error(
            f"{where} is larger than the {limit}-byte JSON limit.",
            hint=f"Raise the limit with max_bytes= or ${MAX_JSON_ENV} if the document is trusted.",
        )
    try:
        return json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise error(
            f"{where} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.", hint="Pass a STAC JSON file."
        ) from exc
    except ValueError as exc:
        raise error(f"{where} is not valid JSON: {exc}.", hint="Fix the document.") from exc
    except RecursionError as exc:
        raise error(f"{where} is nested too deeply to be read.", hint="A STAC document is a few levels deep.") from exc


def _read_capped(path: Path, what: str, error: type[MLMExportError], limit: int) -> bytes:
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{what} '{path}' is not a regular file.", hint="Pass the path of a JSON file.")
        if path.stat().st_size > limit:
            raise error(
                f"{what} '{path}' is larger than the {limit}-byte JSON limit.",
                hint=f"Raise the limit with max_bytes= or ${MAX_JSON_ENV} if the document is trusted.",
            )
        with open(path, "rb") as stream:
            return stream.read(limit + 1)
    except FileNotFoundError as exc:
        raise error(f"{what} '{path}' does not exist.", hint="Check the path.") from exc
    except OSError as exc:
        raise error(f"{what} '{path}' cannot be read: {exc.strerror}.", hint="Pass a JSON file.") from exc


def read_json_object(
    path: Path,
    what: str,
    error: type[MLMExportError] = ItemValidationError,
    *,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Return the JSON object in ``path`` (size-capped, strict: see :func:`parse_json`).

    Raises:
        MLMExportError: ``error``, naming ``what`` and the path, when the file is missing, unreadable, not a
            regular file, too large, not strict JSON or not an object.
    """
    limit = max_json_bytes(max_bytes)
    data = _read_capped(path, what, error, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} '{path}' is not UTF-8 text: {exc}.", hint="Pass a JSON file.") from exc
    document = parse_json(text, f"{what} '{path}'", error=error, max_bytes=limit)
    if not isinstance(document, dict):
        raise error(
            f"{what} '{path}' holds JSON {type(document).__name__}, not an object.", hint="Pass a STAC JSON file."
        )
    return document


def _local_location(href: str | None) -> Path | None:
    if not href:
        return None
    parsed = urlparse(href)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(href)
    return None


def read_item_document(
    item: Any, *, max_bytes: int | None = None, error: type[MLMExportError] = ItemValidationError
) -> tuple[dict[str, Any], Path | None, str | None]:
    """The JSON document of an item, the resolved directory its relative hrefs resolve against, and its location.

    Args:
        item: a path or ``file://`` URL of a JSON file, a dict, or a pystac object.
        max_bytes: JSON size cap (see :func:`max_json_bytes`).
        error: the error class raised.

    Raises:
        MLMExportError: ``error`` when the item cannot be read or is not a JSON object.
    """
    if isinstance(item, (str, os.PathLike)):
        text = os.fspath(item)
        scheme = urlparse(text).scheme
        if isinstance(item, str) and scheme in REMOTE_SCHEMES:
            raise error(
                f"Item {text} is remote; mlm-export reads Items from local files.",
                hint="Download the Item and its model file, then pass the local path.",
            )
        path = _local_location(text) if scheme == "file" else Path(text)
        assert path is not None
        return read_json_object(path, "Item file", error, max_bytes=max_bytes), path.resolve().parent, text
    if isinstance(item, Mapping):
        return dict(item), None, None
    to_dict = getattr(item, "to_dict", None)
    if callable(to_dict):
        self_href = item.get_self_href() if hasattr(item, "get_self_href") else None
        location = _local_location(self_href)
        base = location.resolve().parent if location is not None else None
        return to_dict(include_self_link=False, transform_hrefs=False), base, self_href
    raise error(
        f"Cannot read an Item from an object of type {type(item).__name__}.",
        hint="Pass a pystac.Item, a dict or the path of a JSON file.",
    )


# --- structure ---------------------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def non_finite_numbers(document: Any) -> Iterator[str]:
    """JSON pointers of every NaN/Infinity float in ``document`` (iterative: safe on deep nesting)."""
    try:
        json.dumps(document, allow_nan=False, check_circular=False)  # in C: proves the common case, none anywhere
        return
    except (ValueError, TypeError, RecursionError):
        pass  # one is there (or the document is not plain JSON, or very deep): find where
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        pointer, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            yield pointer or "/"
        elif isinstance(value, Mapping):
            stack.extend((f"{pointer}/{key}", child) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((f"{pointer}/{index}", child) for index, child in enumerate(value))


def _asset_problems(key: str, asset: Any) -> Iterator[tuple[str, str]]:
    pointer = f"/assets/{key}"
    if not isinstance(asset, Mapping):
        yield pointer, f"must be an object, got {_type_name(asset)}"
        return
    href = asset.get("href")
    if not isinstance(href, str) or not href:
        yield (
            f"{pointer}/href",
            "is required and must be a non-empty string" + ("" if href is None else f", got {_type_name(href)}"),
        )
    roles = asset.get("roles")
    if roles is not None and not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
        yield f"{pointer}/roles", f"must be an array of strings, got {_type_name(roles)}"
    size = asset.get("file:size")
    if size is not None and not (_is_int(size) and size >= 0):
        yield f"{pointer}/file:size", f"must be a non-negative integer number of bytes, got {size!r}"
    for name in ("file:checksum", "mlm:artifact_type", "type"):
        if name in asset and not isinstance(asset[name], str):
            yield f"{pointer}/{name}", f"must be a string, got {_type_name(asset[name])}"


def _tensor_problems(pointer: str, tensor: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(tensor, Mapping):
        yield pointer, "is required and must be an object with shape, dim_order and data_type"
        return
    shape, order = tensor.get("shape"), tensor.get("dim_order")
    if not (isinstance(shape, list) and all(_is_int(s) for s in shape)):
        yield f"{pointer}/shape", f"must be an array of integers, got {shape!r}"[:200]
    if not (isinstance(order, list) and all(isinstance(d, str) for d in order)):
        yield f"{pointer}/dim_order", f"must be an array of dimension names, got {order!r}"[:200]
    elif isinstance(shape, list) and len(order) != len(shape):
        yield f"{pointer}/dim_order", f"dim_order has {len(order)} names but shape {shape} has {len(shape)} dimensions"
    if not isinstance(tensor.get("data_type"), str):
        yield f"{pointer}/data_type", "is required and must be a string"


def _model_io_problems(properties: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key, structure in (("mlm:input", "input"), ("mlm:output", "result")):
        entries = properties.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            yield f"/properties/{key}", f"must be an array, got {_type_name(entries)}"
            continue
        for index, entry in enumerate(entries):
            pointer = f"/properties/{key}/{index}"
            if not isinstance(entry, Mapping):
                yield pointer, f"must be an object, got {_type_name(entry)}"
                continue
            if not isinstance(entry.get("name"), str):
                yield f"{pointer}/name", "is required and must be a string"
            yield from _tensor_problems(f"{pointer}/{structure}", entry.get(structure))


def structure_problems(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(JSON pointer, sentence) for every structural fault later code must not meet.

    Checked: non-finite numbers anywhere; ``properties`` an object; ``assets`` an object of objects with a string
    ``href``, string-array ``roles``, integer ``file:size``; ``links`` an array of objects with string ``href``;
    ``stac_extensions`` an array of strings; ``bbox`` an array of numbers; every ``mlm:input``/``mlm:output`` an
    object with a name and a tensor whose integer ``shape`` has one ``dim_order`` name per dimension.
    """
    problems = [(pointer, "NaN and Infinity are not valid JSON numbers") for pointer in non_finite_numbers(document)]
    properties = document.get("properties", {})
    if not isinstance(properties, Mapping):
        problems.append(("/properties", f"must be an object, got {_type_name(properties)}"))
    else:
        problems += _model_io_problems(properties)
    assets = document.get("assets", {})
    if not isinstance(assets, Mapping):
        problems.append(("/assets", f"must be an object mapping keys to assets, got {_type_name(assets)}"))
    else:
        for key, asset in assets.items():
            problems += _asset_problems(str(key), asset)
    links = document.get("links", [])
    if not isinstance(links, list):
        problems.append(("/links", f"must be an array of links, got {_type_name(links)}"))
    else:
        for index, link in enumerate(links):
            if not isinstance(link, Mapping) or not isinstance(link.get("href"), str):
                problems.append((f"/links/{index}", "must be an object with a string href"))
    extensions = document.get("stac_extensions", [])
    if not (isinstance(extensions, list) and all(isinstance(e, str) for e in extensions)):
        problems.append(("/stac_extensions", "must be an array of schema URLs"))
    bbox = document.get("bbox")
    if bbox is not None and not (
        isinstance(bbox, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        problems.append(("/bbox", f"must be an array of numbers, got {bbox!r}"[:200]))
    return problems


def require_structure(document: Mapping[str, Any], where: str) -> None:
    """Raise when :func:`structure_problems` finds anything.

    Raises:
        ItemValidationError: the first problem with its JSON pointer in the message; ``.problems`` holds all.
    """
    problems = structure_problems(document)
    if problems:
        pointer, message = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ItemValidationError(
            f"{where} is malformed: {pointer}: {message}{more}.",
            problems=[f"{p}: {m}" for p, m in problems],
            hint="Run `mlm-export validate` on it for every problem.",
        )


# --- hrefs -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedHref:
    """Where an href points: its kind and, for local files, the resolved path."""

    href: str
    kind: HrefKind
    path: Path | None = None

    @property
    def readable(self) -> bool:
        """Whether mlm-export may open the file (a local href inside the Item's or an allowed directory)."""
        return self.kind == "local"


def encode_href(href: str) -> str:
    """Percent-encode a local path for an href: spaces, non-ASCII, ``%``, ``#``, ``?``, ``:`` (``=`` is kept)."""
    return quote(href, safe=_SAFE_HREF_CHARS)


def decode_href(href: str) -> str:
    """The local path of an href: ``file://`` stripped, percent-encoding decoded."""
    parsed = urlparse(href)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return unquote(href)


def _inside(path: Path, directories: Iterable[Path]) -> bool:
    return any(path == d or path.is_relative_to(d) for d in directories)


def resolve_href(
    href: str, base: Path | None, *, allow_outside: Sequence[str | os.PathLike[str]] = (), confine: bool = True
) -> ResolvedHref:
    """Classify ``href`` and resolve a local one (``..`` and symlinks followed) against ``base``.

    Args:
        href: the asset or link href.
        base: the Item's directory (``None`` when the Item has no location).
        allow_outside: further directories local hrefs may resolve into.
        confine: ``False`` when the Item has no location of its own (an in-memory dict the caller built): absolute
            local hrefs are then ``local`` wherever they point.
    """
    parsed = urlparse(href)
    scheme = parsed.scheme.lower()
    if scheme in REMOTE_SCHEMES:
        return ResolvedHref(href, "remote")
    if scheme not in ("", "file") and not (len(scheme) == 1 and os.name == "nt"):
        return ResolvedHref(href, "registry")
    raw = Path(decode_href(href))
    if not raw.is_absolute():
        if base is None:
            return ResolvedHref(href, "unresolved")
        raw = base / raw
    path = Path(os.path.realpath(raw))
    if not confine and base is None:
        return ResolvedHref(href, "local", path)
    allowed = [Path(os.path.realpath(d)) for d in ([base] if base is not None else []) + list(allow_outside)]
    return ResolvedHref(href, "local" if _inside(path, allowed) else "outside", path)


def outside_message(resolved: ResolvedHref, base: Path | None) -> str:
    """The sentence for an href outside the Item's directory (names the href, never the file's content)."""
    where = f"the Item's directory '{base}'" if base is not None else "the allowed directories"
    return (
        f"href {resolved.href!r} points outside {where}; it was not opened "
        "(pass allow_outside=[DIR] / --allow-outside DIR to allow it)"
    )


def resolve_asset_href(
    href: str,
    base: Path | None,
    *,
    where: str,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
    confine: bool = True,
    outside_hint: str = "Keep artifacts next to their Item, or pass allow_outside=[DIR] (--allow-outside DIR).",
) -> ResolvedHref:
    """:func:`resolve_href` for an href about to be opened: a local one must resolve inside its place.

    The one place that turns "relative href, but no location" and "outside the Item's directory" into errors;
    what to do with a ``remote`` or ``registry`` href, and with a local path that is not a regular file, stays
    with the caller (placing an Item skips URLs, loading one downloads them).

    Args:
        href: the asset's href.
        base: the Item's directory (``None`` when the Item has no location).
        where: what holds the href, for messages ("Asset 'model'", "Item 'x' asset 'model'").
        allow_outside: further directories local hrefs may resolve into.
        confine: ``False`` for an Item without a location of its own (see :func:`resolve_href`).
        outside_hint: the hint of the error for an href outside the allowed directories.

    Returns:
        The resolved href: kind ``local`` (with its real path), ``remote`` or ``registry``.

    Raises:
        ConfigurationError: ``href`` is relative and ``base`` is ``None``.
        ItemValidationError: ``href`` resolves outside ``base`` and ``allow_outside``.
    """
    resolved = resolve_href(href, base, allow_outside=allow_outside, confine=confine)
    if resolved.kind == "unresolved":
        raise ConfigurationError(
            f"{where} has the relative href {href!r} but the item's location is unknown.",
            hint="Pass the item as a file path (or a pystac.Item with a self href), or make the href absolute.",
        )
    if resolved.kind == "outside":
        raise ItemValidationError(f"{where}: {outside_message(resolved, base)}.", hint=outside_hint)
    return resolved
