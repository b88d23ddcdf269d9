"""Offline validation of STAC Items against the official schemas, plus the checks schemas cannot express.

Schemas: the core schema of the item's ``stac_version`` and every schema in ``stac_extensions``. Semantic checks:
band names defined, band and class counts against the tensor dimensions, dim_order length, multihash checksums,
and for local hrefs the file's existence, size and checksum.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlm_export.errors import ItemValidationError, SchemaNotFoundError
from mlm_export.hashing import hash_file, is_multihash
from mlm_export.provenance.container import is_registry_reference
from mlm_export.stac.compiled import compiled_schema, shared_store
from mlm_export.stac.io import (
    outside_message,
    read_item_document,
    read_json_object,  # noqa: F401 - re-exported (catalog reads JSON objects through it)
    resolve_href,
    structure_problems,
)
from mlm_export.stac.schemas import SchemaStore

if TYPE_CHECKING:
    import pystac
    from jsonschema.exceptions import ValidationError

CORE_SCHEMA = "https://schemas.stacspec.org/v{version}/{kind}-spec/json-schema/{kind}.json"
_KINDS = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}
_MAX_MESSAGE = 240
#: Sentences for long schema patterns, by their start.
KNOWN_PATTERNS = {
    "^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)": "is not a full semantic version (X.Y.Z, e.g. '2.1.0')",
    "^[a-zA-Z][a-zA-Z0-9_.\\-\\s]+[a-zA-Z0-9]$": "is not a valid name (3+ characters: a letter first, a letter "
    "or digit last, then letters, digits, '_', '.', '-' or spaces)",
}
Resolve = Callable[[str], Any]


@dataclass(frozen=True)
class Problem:
    """One reason an item is invalid: where (JSON pointer) and what, in a sentence."""

    path: str
    message: str
    source: str = "schema"
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``--json`` output)."""
        return {"path": self.path, "message": self.message, "source": self.source, "schema": self.schema}


@dataclass(frozen=True)
class ValidationReport:
    """Result of :func:`validate_item`: ``valid`` and every problem found."""

    valid: bool
    problems: tuple[Problem, ...] = ()
    schemas: tuple[str, ...] = ()
    location: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.valid

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``--json`` output)."""
        return {
            "location": self.location,
            "valid": self.valid,
            "schemas": list(self.schemas),
            "problems": [p.to_dict() for p in self.problems],
        }

    def raise_for_problems(self) -> None:
        """Raise :class:`ItemValidationError` when the item is invalid."""
        if not self.valid:
            raise ItemValidationError(
                f"{self.location or 'The item'} is invalid: {self.problems[0]}"
                + (f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""),
                problems=list(self.problems),
            )


def _pointer(parts: Any) -> str:
    return "".join(f"/{p}" for p in parts)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _other_kind(errors: list[ValidationError]) -> bool:
    """Whether a oneOf/anyOf branch failed because it is written for another object type (Catalog vs Feature)."""
    return any(e.validator == "const" and list(e.absolute_path)[-1:] == ["type"] for e in errors)


def _depth(error: ValidationError) -> int:
    return max([len(error.absolute_path), *(_depth(e) for e in error.context)])


def _only_null(errors: list[ValidationError]) -> bool:
    """Whether a branch is the ``{"type": "null"}`` alternative of a nullable field."""
    return all(e.validator == "type" and e.validator_value == "null" for e in errors)


def _branches(error: ValidationError) -> list[list[ValidationError]]:
    groups: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        groups.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else None, []).append(sub)
    relevant = [g for g in groups.values() if not _other_kind(g) and not _only_null(g)]
    return relevant or list(groups.values())


def _deepest(errors: list[ValidationError]) -> ValidationError:
    depth = max(_depth(e) for e in errors)
    deepest = [e for e in errors if _depth(e) == depth]
    from jsonschema.exceptions import best_match  # only invalid documents get here (see stac/compiled.py)

    return best_match(deepest) or deepest[0]


def _explain_error(error: ValidationError, resolve: Resolve) -> tuple[str, str]:
    """JSON pointer and sentence for the most specific cause of ``error``.

    Descends into the one failing branch of an anyOf/oneOf that reaches deepest into the document (the branch the
    author meant); when several branches tie, the sentence lists what each alternative needed.
    """
    while error.context:
        branches = _branches(error)
        if len(branches) == 1:
            error = _deepest(branches[0])
            continue
        depths = [max(_depth(e) for e in group) for group in branches]
        top = max(depths)
        leading = [group for group, depth in zip(branches, depths, strict=True) if depth == top]
        if len(leading) == 1:
            error = _deepest(leading[0])
            continue
        reasons = []
        for group in branches:
            path, message = _explain_error(_deepest(group), resolve)
            reasons.append(f"{path or '/'} {message}")
        return _pointer(error.absolute_path), _short("none of the alternatives holds: " + "; or ".join(reasons))
    return _pointer(error.absolute_path), _explain(error, resolve)


def _required_names(schema: Any) -> set[str]:
    if isinstance(schema, Mapping):
        names = set(schema.get("required", [])) if isinstance(schema.get("required"), list) else set()
        for value in schema.values():
            names |= _required_names(value)
        return names
    if isinstance(schema, list):
        return set().union(*(_required_names(v) for v in schema)) if schema else set()
    return set()


def _explain(error: ValidationError, resolve: Resolve) -> str:
    validator = error.validator
    if validator == "const":
        return _short(f"must be {error.validator_value!r}, got {error.instance!r}")
    if validator == "contains" and isinstance(error.validator_value, Mapping):
        wanted = error.validator_value.get("const")
        if wanted is not None:
            return _short(f"must contain {wanted!r}")
    if validator == "enum":
        return _short(f"{error.instance!r} is not one of {error.validator_value}")
    if validator == "pattern":
        known = next((text for start, text in KNOWN_PATTERNS.items() if error.validator_value.startswith(start)), None)
        if known:
            return _short(f"{error.instance!r} {known}")
        return _short(f"{error.instance!r} does not match the pattern {error.validator_value}")
    if validator == "not":
        explained = _explain_not(error, resolve)
        if explained:
            return explained
    if validator == "minProperties" and isinstance(error.instance, Mapping) and not error.instance:
        return "must not be empty"
    if validator is None and error.validator_value is False:
        return "this property is not allowed here"
    return _short(error.message)


def _explain_not(error: ValidationError, resolve: Resolve) -> str | None:
    """What a failing ``not`` forbids (a value the array contains, properties present), if it can be named."""
    forbidden = error.validator_value
    if isinstance(forbidden, Mapping) and "$ref" in forbidden:
        forbidden = resolve(forbidden["$ref"])
    if isinstance(forbidden, Mapping) and isinstance(forbidden.get("contains"), Mapping):
        if "const" in forbidden["contains"]:
            return _short(f"must not contain {forbidden['contains']['const']!r} here")
    if isinstance(error.instance, Mapping):
        present = sorted(_required_names(forbidden) & set(error.instance))
        if present:
            return _short(f"must not contain {', '.join(repr(p) for p in present)} here")
    return None


_PLAIN = (str, int, float)


def _canonical(value: Any) -> Any:
    """A hashable form of a JSON value under JSON-Schema equality (1 == 1.0, true != 1, key order ignored).

    Python already equates 1 and 1.0 (same hash), so numbers and strings stand for themselves; booleans, arrays and
    objects are tagged so that ``true`` never equals ``1`` and an array never equals an object.
    """
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        if all(type(item) in _PLAIN for item in value.values()):  # flat objects (class lists): no recursion
            return ("object", frozenset(value.items()))
        return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    return ("other", repr(value))


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``uniqueItems`` in linear time (jsonschema's own compares every pair of objects: 67 s for 10,000 classes)."""
    if not unique or not validator.is_type(instance, "array"):
        return
    from jsonschema.exceptions import ValidationError  # jsonschema's checker calls this keyword: already imported

    seen: dict[Any, int] = {}
    for index, item in enumerate(instance):
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"has non-unique elements: item {index} repeats item {seen[key]}")
            return
        seen[key] = index


def _schema_problems(document: Mapping[str, Any], url: str, store: SchemaStore) -> Iterator[Problem]:
    """Problems of ``document`` against the schema at ``url``, explained.

    None when the fast validator accepts it, else each error jsonschema finds (see :mod:`mlm_export.stac.compiled`).
    """
    compiled = compiled_schema(store, url, {"uniqueItems": _unique_items})
    if compiled.is_valid(document):
        return
    try:
        errors = compiled.errors(document)
    except RecursionError:
        yield Problem("", "the document is nested too deeply to be validated", "schema", url)
        return
    for error in errors:
        path, message = _explain_error(error, compiled.resolve)
        yield Problem(path, message, "schema", url)


def _band_names(values: Any, *, computed: bool = True) -> list[str]:
    """Names of a band list; ``computed=False`` skips bands given by an expression (derived, not read)."""
    names = []
    for band in values or []:
        if isinstance(band, str):
            names.append(band)
        elif isinstance(band, Mapping) and isinstance(band.get("name"), str):
            if computed or "expression" not in band:
                names.append(band["name"])
    return names


def _definition_names(values: Any) -> set[str]:
    """Names a band definition answers to: its name, its first word ('B04' of 'B04 - red'), its common name."""
    names: set[str] = set()
    for band in values or []:
        if not isinstance(band, Mapping):
            continue
        for key in ("name", "common_name", "eo:common_name"):
            value = band.get(key)
            if isinstance(value, str) and value:
                names.add(value)
                names.add(value.split()[0])
    return names


def _defined_bands(document: Mapping[str, Any]) -> set[str] | None:
    props = document.get("properties") or {}
    sources = [props.get("bands"), props.get("eo:bands")]
    for asset in (document.get("assets") or {}).values():
        if isinstance(asset, Mapping):
            sources += [asset.get("bands"), asset.get("eo:bands"), asset.get("raster:bands")]
    if all(s is None for s in sources):
        return None
    return {name for s in sources for name in _definition_names(s)}


def _semantic_problems(document: Mapping[str, Any]) -> Iterator[Problem]:
    props = document.get("properties") or {}
    defined = _defined_bands(document)
    for key, structure in (("mlm:input", "input"), ("mlm:output", "result")):
        entries = props.get(key)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                continue
            base = f"/properties/{key}/{index}"
            tensor = entry.get(structure) if isinstance(entry.get(structure), Mapping) else {}
            shape, order = tensor.get("shape"), tensor.get("dim_order")
            bands = _band_names(entry.get("bands"))
            read_bands = _band_names(entry.get("bands"), computed=False)
            if read_bands and defined is not None:
                for missing in [b for b in read_bands if b not in defined]:
                    yield Problem(
                        f"{base}/bands",
                        f"band {missing!r} is not defined in the item's or model asset's band definitions "
                        f"({sorted(defined)})",
                        "semantic",
                    )
            elif read_bands and defined is None:
                yield Problem(f"{base}/bands", f"bands {bands} have no band definitions in the item", "semantic")
            sizes = dict(zip(order, shape, strict=True)) if isinstance(shape, list) and isinstance(order, list) else {}
            combined = entry.get("pre_processing_function") is not None  # a function may merge bands (NDVI)
            if (
                bands
                and not combined
                and isinstance(sizes.get("bands"), int)
                and sizes["bands"] not in (-1, len(bands))
            ):
                yield Problem(
                    f"{base}/bands",
                    f"{len(bands)} bands are listed but the 'bands' dimension has size {sizes['bands']}",
                    "semantic",
                )
            classes = entry.get("classification:classes")
            size = sizes.get("class")
            if isinstance(classes, list) and classes and isinstance(size, int) and size not in (-1, len(classes)):
                yield Problem(
                    f"{base}/classification:classes",
                    f"{len(classes)} classes are listed but the 'class' dimension has size {size}",
                    "semantic",
                )


def _local_file_problems(pointer: str, asset: Mapping[str, Any], path: Path, checksum: str | None) -> Iterator[Problem]:
    href = asset["href"]
    if not path.exists():
        yield Problem(f"{pointer}/href", f"local file '{href}' does not exist (resolved to {path})", "semantic")
        return
    if not path.is_file():
        yield Problem(f"{pointer}/href", f"'{href}' is not a regular file (resolved to {path})", "semantic")
        return
    size = asset.get("file:size")
    if isinstance(size, int) and size != path.stat().st_size:
        yield Problem(f"{pointer}/file:size", f"is {size} but '{href}' has {path.stat().st_size} bytes", "semantic")
    elif isinstance(checksum, str) and checksum.startswith("1220"):
        actual = hash_file(path).checksum
        if actual != checksum:
            yield Problem(f"{pointer}/file:checksum", f"does not match '{href}' (its sha2-256 is {actual})", "semantic")


def _file_problems(
    document: Mapping[str, Any], base: Path | None, check_files: bool, allow_outside: Sequence[Any], confine: bool
) -> Iterator[Problem]:
    for key, asset in (document.get("assets") or {}).items():
        if not isinstance(asset, Mapping):
            continue
        pointer = f"/assets/{key}"
        checksum = asset.get("file:checksum")
        if isinstance(checksum, str) and not is_multihash(checksum):
            yield Problem(
                f"{pointer}/file:checksum",
                "is not a multihash: expected lowercase hex '1220' + the 64-hex SHA2-256 digest",
                "semantic",
            )
            checksum = None
        href = asset.get("href")
        if not check_files or not isinstance(href, str) or is_registry_reference(asset):  # mlm:container: remote
            continue
        resolved = resolve_href(href, base, allow_outside=allow_outside, confine=confine)
        if resolved.kind == "outside":
            yield Problem(f"{pointer}/href", outside_message(resolved, base), "semantic")
        elif resolved.kind == "local" and resolved.path is not None:
            yield from _local_file_problems(pointer, asset, resolved.path, checksum)
    for index, link in enumerate(document.get("links") or []):
        checksum = link.get("file:checksum") if isinstance(link, Mapping) else None
        if isinstance(checksum, str) and not is_multihash(checksum):
            yield Problem(f"/links/{index}/file:checksum", "is not a multihash ('1220' + sha2-256 hex)", "semantic")
        if check_files and base is not None and confine:
            yield from _missing_link_target(index, link, base)


#: Links that build a catalog (what STAC clients follow); a local one to a missing file is a problem. Provenance links
#: (``derived_from`` to a training set's folder, ``cite-as``...) may name data that is not shipped with the Item.
STRUCTURE_RELS = frozenset(
    {"root", "parent", "child", "item", "collection", "predecessor-version", "successor-version", "latest-version"}
)


def _missing_link_target(index: int, link: Any, base: Path) -> Iterator[Problem]:
    """A local catalog link (:data:`STRUCTURE_RELS`) of an Item read from a file whose target does not exist.

    Only existence is looked at (the file is never opened), and the resolved path is named only when it lies in the
    Item's directory.
    """
    href = link.get("href") if isinstance(link, Mapping) else None
    if not isinstance(href, str) or link.get("rel") not in STRUCTURE_RELS:
        return
    resolved = resolve_href(href, base)
    if resolved.path is None or os.path.lexists(resolved.path):
        return
    where = f" (resolved to {resolved.path})" if resolved.kind == "local" else ""
    yield Problem(
        f"/links/{index}/href",
        f"local link rel={link.get('rel')!r} points to '{href}', which does not exist{where}",
        "semantic",
    )


def _has_remote_self_link(document: Mapping[str, Any]) -> bool:
    from mlm_export.transfer import self_url

    return self_url(document) is not None


def _structure_report(document: Mapping[str, Any]) -> list[Problem]:
    return [Problem(pointer, message, "structure") for pointer, message in structure_problems(document)]


def _extension_problems(document: Mapping[str, Any], urls: list[str], store: SchemaStore) -> list[Problem]:
    """Schema problems of every schema; an extension schema that is not available offline is one problem."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for index, url in enumerate(urls):
        try:
            found = list(_schema_problems(document, url, store))
        except SchemaNotFoundError as exc:
            if index == 0:
                raise
            position = document["stac_extensions"].index(url)
            found = [Problem(f"/stac_extensions/{position}", f"not checked: {exc.message}", "schema", url)]
        for problem in found:
            if (problem.path, problem.message) not in seen:
                seen.add((problem.path, problem.message))
                problems.append(problem)
    return problems


def validate_item(
    item: pystac.Item | Mapping[str, Any] | str | os.PathLike[str],
    schema_dir: str | os.PathLike[str] | None = None,
    *,
    check_files: bool = True,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
    max_bytes: int | None = None,
) -> ValidationReport:
    """Validate an Item (or Collection/Catalog) offline.

    The item is untrusted: its JSON is read strictly (size cap, no duplicate keys, no NaN/Infinity), its structure
    is checked before anything else reads it, and a local href is opened only when it resolves inside the item's
    directory (or ``allow_outside``); an extension schema that is not available offline is reported, not fetched.

    Args:
        item: a ``pystac.Item``, a dict, or the path of a JSON file.
        schema_dir: schema directory; else ``$MLM_EXPORT_SCHEMA_DIR``; else the user cache (https downloads there).
        check_files: for local asset hrefs, check the file exists and its size and checksum match.
        allow_outside: further directories local hrefs may point into.
        max_bytes: JSON size cap (default ``$MLM_EXPORT_MAX_JSON_BYTES`` or 64 MiB).

    Returns:
        A report; ``report.valid`` is False when any problem was found.

    Raises:
        ItemValidationError: the input is not a JSON object at all (or not strict JSON, or too large).
        SchemaNotFoundError: the core schema (e.g. of an unknown ``stac_version``) is not available.

    .. versionadded:: 0.1
    """
    document, base, location = read_item_document(item, max_bytes=max_bytes)
    return validate_read(document, base, location, shared_store(schema_dir), check_files, allow_outside)


def validate_read(
    document: dict[str, Any],
    base: Path | None,
    location: str | None,
    store: SchemaStore,
    check_files: bool = True,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
) -> ValidationReport:
    """:func:`validate_item` of a document already read strictly (``read_json_object``), not read again.

    ``base`` is the resolved directory of its file and ``location`` the file's path; ``store`` from
    :func:`shared_store`. For callers that validate many Items they read themselves (publishing).
    """
    problems: list[Problem] = []
    kind = _KINDS.get(str(document.get("type")))
    version = document.get("stac_version")
    if kind is None:
        problems.append(Problem("/type", f"must be 'Feature', 'Collection' or 'Catalog', got {document.get('type')!r}"))
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+(-[\w.]+)?", version):
        problems.append(Problem("/stac_version", f"must be a version like '1.1.0', got {version!r}"))
    if problems:
        return ValidationReport(False, tuple(problems), (), location)

    structural = _structure_report(document)
    extensions = document.get("stac_extensions")
    urls = [CORE_SCHEMA.format(version=version, kind=kind)]
    urls += [u for u in (extensions if isinstance(extensions, list) else []) if isinstance(u, str) and u not in urls]
    problems = structural + [
        p for p in _extension_problems(document, urls, store)
        if not any(p.path.startswith(s.path) for s in structural)
    ]  # fmt: skip
    if not structural:
        problems += list(_semantic_problems(document))
        # a dict whose self link is a URL is a remote Item: its local hrefs are confined (to allow_outside only)
        confine = location is not None or _has_remote_self_link(document)
        problems += list(_file_problems(document, base, check_files, allow_outside, confine))
    return ValidationReport(not problems, tuple(problems), tuple(urls), location)
