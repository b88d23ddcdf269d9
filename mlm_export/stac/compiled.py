"""Compiled JSON-schema validators, built once per schema store and URL and reused for every document.

Each schema gets two validators over the same offline :class:`~mlm_export.stac.schemas.SchemaStore` (every
``$ref`` is retrieved through it, never from the network unless the store is the download cache):

* ``fast``: ``jsonschema_rs`` (compiled, in Rust), used to answer "valid?" for a whole document in microseconds;
* ``checker``: the ``jsonschema`` validator, used only when ``fast`` says invalid (or could not be built), to list
  every error with the details :mod:`mlm_export.stac.validate` turns into sentences. It is built, and ``jsonschema``
  and ``referencing`` are imported, only then: a valid Item costs neither (tens of ms in a fresh process).

A document is valid when ``fast`` says so, else exactly when ``checker`` finds no error, so the answer is
``checker``'s whenever the two could disagree in the strict direction (``jsonschema_rs`` reads a ``pattern``'s digit
class as ASCII digits only, Python's ``re`` as any Unicode digit). ``tests/stac/test_compiled.py`` compares both on
the official examples and hundreds of corrupted variants. Formats are not checked by either (as in ``jsonschema``
by default).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from mlm_export.errors import SchemaNotFoundError
from mlm_export.stac.schemas import SCHEMA_DIR_ENV, SchemaStore, default_cache_dir

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

Keyword = Callable[[Any, Any, Any, Any], Iterator["ValidationError"]]
#: ``$schema`` (normalised as jsonschema's ``URIDict`` does) -> the name of jsonschema's validator class for it; a
#: schema without ``$schema`` is read as draft 7 (``validator_for(..., default=Draft7Validator)``). Kept here so
#: that the fast path imports neither ``jsonschema`` nor ``referencing`` (tens of ms on the first validation).
_DRAFTS = {
    "http://json-schema.org/draft-03/schema": "Draft3Validator",
    "http://json-schema.org/draft-04/schema": "Draft4Validator",
    "http://json-schema.org/draft-06/schema": "Draft6Validator",
    "http://json-schema.org/draft-07/schema": "Draft7Validator",
    "https://json-schema.org/draft/2019-09/schema": "Draft201909Validator",
    "https://json-schema.org/draft/2020-12/schema": "Draft202012Validator",
}
DEFAULT_DRAFT = "Draft7Validator"
#: jsonschema's validator classes -> the jsonschema_rs class for the same draft (Draft 3 has none: checker only).
_FAST_CLASSES: dict[str, Any] = {
    "Draft4Validator": jsonschema_rs.Draft4Validator,
    "Draft6Validator": jsonschema_rs.Draft6Validator,
    "Draft7Validator": jsonschema_rs.Draft7Validator,
    "Draft201909Validator": jsonschema_rs.Draft201909Validator,
    "Draft202012Validator": jsonschema_rs.Draft202012Validator,
}
#: Stores by (resolved directory, download) and by the (schema_dir, $MLM_EXPORT_SCHEMA_DIR, cache) leading there.
_STORES: dict[tuple[Any, ...], SchemaStore] = {}
_LOCK = threading.Lock()


class CompiledSchema:
    """The validators of one schema URL (see the module docstring); the ``jsonschema`` side is built on first use."""

    def __init__(
        self, url: str, store: SchemaStore, schema: Any, keywords: Mapping[str, Keyword] | None, fast: Any | None
    ) -> None:
        self.url = url
        self.fast = fast
        self._store = store
        self._schema = schema
        self._keywords = dict(keywords or {})

    @cached_property
    def checker(self) -> Any:
        """The ``jsonschema`` validator (with the replacement keywords), over the store's registry."""
        from jsonschema import validators

        checker_class = validators.validator_for(self._schema, default=validators.Draft7Validator)
        if self._keywords:
            checker_class = validators.extend(checker_class, self._keywords)
        return checker_class(self._schema, registry=self._registry)

    @cached_property
    def _registry(self) -> Any:
        return self._store.registry()

    @cached_property
    def _resolver(self) -> Any:
        return self._registry.resolver(base_uri=self.url)

    def is_valid(self, document: Any) -> bool | None:
        """``True`` when the fast validator accepts ``document``; ``None`` when only :meth:`errors` can tell."""
        if self.fast is None:
            return None
        try:
            return True if self.fast.is_valid(document) else None
        except (ValueError, TypeError, OverflowError, RecursionError):  # not plain JSON (e.g. an object() value)
            return None

    def errors(self, document: Any) -> list[ValidationError]:
        """Every error ``jsonschema`` finds in ``document``.

        Raises:
            SchemaNotFoundError: a ``$ref`` cannot be resolved from the store.
            RecursionError: the document is nested too deeply for ``jsonschema``.
        """
        from referencing.exceptions import Unresolvable

        try:
            return list(self.checker.iter_errors(document))
        except Unresolvable as exc:
            raise SchemaNotFoundError(
                f"A schema referenced from {self.url} could not be resolved: {exc}.",
                hint="Add the missing schema to the schema directory.",
            ) from exc

    def resolve(self, ref: str) -> Any:
        """The contents of ``ref`` (relative to this schema), ``{}`` when it cannot be resolved."""
        from referencing.exceptions import Unresolvable

        try:
            return self._resolver.lookup(ref).contents
        except Unresolvable:
            return {}


def shared_store(schema_dir: str | os.PathLike[str] | None = None) -> SchemaStore:
    """The process-wide :class:`SchemaStore` of the directory ``schema_dir`` resolves to (loaded schemas kept).

    Raises:
        SchemaNotFoundError: the directory (given or from the environment) does not exist.
    """
    argument, environment = os.fspath(schema_dir) if schema_dir is not None else None, os.environ.get(SCHEMA_DIR_ENV)
    cache = str(default_cache_dir()) if argument is None and not environment else None  # follows XDG_CACHE_HOME...
    given = (argument, environment, cache)
    found = _STORES.get(given)
    if found is not None:
        return found
    store = SchemaStore(schema_dir)
    key = (str(store.directory.resolve()), store.download)
    with _LOCK:
        shared = _STORES.setdefault(key, store)
        _STORES[given] = shared
        return shared


def draft_of(schema: Any) -> str | None:
    """The name of jsonschema's validator class for ``schema`` (as ``validator_for(..., default=Draft7Validator)``).

    None for a ``$schema`` that is not text (left to jsonschema).
    """
    if not isinstance(schema, Mapping) or "$schema" not in schema:
        return DEFAULT_DRAFT
    declared = schema["$schema"]
    if not isinstance(declared, str):
        return None
    return _DRAFTS.get(urllib.parse.urlsplit(declared).geturl(), DEFAULT_DRAFT)


def _fast_validator(store: SchemaStore, url: str, schema: Any) -> Any | None:
    """The jsonschema_rs validator of ``schema``, or None when it has no class for the draft or cannot build it."""
    fast_class = _FAST_CLASSES.get(draft_of(schema) or "")
    if fast_class is None or not isinstance(schema, Mapping):
        return None
    try:
        return fast_class(schema, validate_formats=False, retriever=store.load, base_uri=url.split("#", 1)[0])
    except (ValueError, TypeError, SchemaNotFoundError):  # an unresolvable $ref, a regex it cannot compile...
        return None  # the checker reports (or raises) what is wrong, as without the fast path


def compiled_schema(store: SchemaStore, url: str, keywords: Mapping[str, Keyword] | None = None) -> CompiledSchema:
    """The validators of the schema at ``url``, built on first use and kept in ``store``.

    Args:
        store: where the schema and every schema it references come from.
        url: the schema URL.
        keywords: keyword implementations replacing jsonschema's own in the checker (same meaning, e.g. faster).

    Raises:
        SchemaNotFoundError: the schema is not available (see :meth:`SchemaStore.load`).
    """
    key = (url, tuple(sorted(keywords or {})))
    found = store.compiled.get(key)
    if found is not None:
        return found
    schema = store.load(url)
    compiled = CompiledSchema(url, store, schema, keywords, _fast_validator(store, url, schema))
    store.compiled[key] = compiled
    return compiled
