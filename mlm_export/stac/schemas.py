"""Offline JSON-schema store: a directory laid out like ``../shared/schemas`` (URL without scheme, INDEX.json).

Lookup order: the ``schema_dir`` argument, else ``$MLM_EXPORT_SCHEMA_DIR`` (a directory given either way is the
only place searched: a schema missing from it is an error); else the schemas bundled with the package
(``mlm_export/stac/schemas_data``: every schema reachable from what mlm-export writes and from the official MLM
examples, see its NOTICE), then the user cache directory (``platformdirs.user_cache_dir("mlm-export")/schemas``),
where a schema missing from both is downloaded by URL (with a timeout). So the package validates its own Items
with no network; other versions still come from the cache.

Schema URLs come from untrusted Items, so: JSON-Schema meta-schemas (``http://json-schema.org/draft-07/schema``...)
come from the specifications bundled with ``jsonschema``, never a file or the network; any other URL must be
``https``; every path a URL maps to is resolved and must stay inside the schema directory (``..``, absolute
INDEX entries and symlinks out are refused); downloads are size-capped and parsed strictly.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlm_export.errors import SchemaNotFoundError
from mlm_export.stac.io import parse_json

if TYPE_CHECKING:
    from referencing import Registry, Resource

SCHEMA_DIR_ENV = "MLM_EXPORT_SCHEMA_DIR"
#: The schemas shipped as package data (laid out like ``shared/schemas``, with INDEX.json).
BUNDLED_DIR = Path(__file__).resolve().with_name("schemas_data")
DOWNLOAD_TIMEOUT_S = 20.0
#: Largest schema document read or downloaded.
MAX_SCHEMA_BYTES = 8 * 1024 * 1024


def default_cache_dir() -> Path:
    """The user cache directory for downloaded schemas."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mlm-export")) / "schemas"


def url_to_relative_path(url: str) -> str:
    """``https://host/a/b.json#`` -> ``host/a/b.json``."""
    bare = url.split("#", 1)[0]
    return bare.split("://", 1)[-1]


def _read_index(directory: Path) -> Mapping[str, str]:
    """INDEX.json of ``directory`` (URL -> relative path), empty when absent."""
    index_path = directory / "INDEX.json"
    if index_path.is_file():
        index = parse_json(index_path.read_bytes(), f"'{index_path}'", error=SchemaNotFoundError)
        return index if isinstance(index, dict) else {}
    return {}


def _bundled_meta_schema(url: str) -> Any:
    """The JSON-Schema meta-schema at ``url`` from jsonschema's bundled specifications, or None."""
    if "json-schema.org/" not in url:
        return None
    from jsonschema_specifications import REGISTRY

    for candidate in (url, url + "#", url.replace("https://", "http://", 1)):
        try:
            return REGISTRY.contents(candidate)
        except LookupError:
            continue
    return None


class SchemaStore:
    """Loads schemas by URL from one directory, or from the bundled schemas then the cache (downloading into it)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        if directory is not None:
            self.directory, self.origin, self.download = Path(directory), "the schema_dir argument", False
        elif os.environ.get(SCHEMA_DIR_ENV):
            self.directory, self.origin, self.download = Path(os.environ[SCHEMA_DIR_ENV]), f"${SCHEMA_DIR_ENV}", False
        else:
            self.directory, self.origin, self.download = default_cache_dir(), "the user cache", True
        #: The bundled schemas, searched before the cache when no directory is given.
        self.bundled: Path | None = BUNDLED_DIR if self.download and BUNDLED_DIR.is_dir() else None
        if not self.download and not self.directory.is_dir():
            raise SchemaNotFoundError(
                f"Schema directory '{self.directory}' (from {self.origin}) does not exist.",
                hint=f"Point {SCHEMA_DIR_ENV} or schema_dir at a directory laid out like shared/schemas.",
            )
        self._cache: dict[str, Any] = {}
        #: Compiled validators by URL (see :func:`mlm_export.stac.compiled.compiled_schema`).
        self.compiled: dict[Any, Any] = {}

    @cached_property
    def index(self) -> Mapping[str, str]:
        """INDEX.json of the directory (URL -> relative path), empty when absent."""
        return _read_index(self.directory)

    @cached_property
    def bundled_index(self) -> Mapping[str, str]:
        """INDEX.json of the bundled schemas (empty when a directory was given)."""
        return _read_index(self.bundled) if self.bundled is not None else {}

    def _bundled_path(self, url: str) -> Path | None:
        """The bundled file of ``url``, or None when it is not bundled (only URLs listed in the INDEX are)."""
        relative = self.bundled_index.get(url) or self.bundled_index.get(url + "#")
        if self.bundled is None or relative is None:
            return None
        path = (self.bundled / str(relative)).resolve()
        return path if path.is_relative_to(self.bundled) and path.is_file() else None

    def _path_for(self, url: str) -> Path:
        """The file of ``url`` inside the directory (or the bundled schemas).

        Raises:
            SchemaNotFoundError: the URL is not https, or its path resolves outside the directory.
        """
        if urllib.parse.urlparse(url).scheme != "https":
            raise SchemaNotFoundError(
                f"Schema {url} is not an https URL; only https schemas are read (and meta-schemas come bundled "
                "with jsonschema).",
                hint="Use the extension's published https schema URL in stac_extensions.",
            )
        bundled = self._bundled_path(url)
        if bundled is not None:
            return bundled
        relative = self.index.get(url) or self.index.get(url + "#") or url_to_relative_path(url)
        root = self.directory.resolve()
        path = (root / str(relative)).resolve()
        if not path.is_relative_to(root) or path == root:
            raise SchemaNotFoundError(
                f"Schema {url} maps to '{path}', outside the schema directory '{root}'; it was not read.",
                hint="Schema URLs must not climb out of their host ('..').",
            )
        return path

    def load(self, url: str) -> Any:
        """Return the parsed schema at ``url``.

        Raises:
            SchemaNotFoundError: a non-https URL, a path outside the directory, or not in the directory and (unless
                it is the cache) not downloadable.
        """
        key = url.split("#", 1)[0]
        if key in self._cache:
            return self._cache[key]
        bundled = _bundled_meta_schema(key)
        if bundled is not None:
            return bundled
        path = self._path_for(key)
        if not path.is_file():
            if not self.download:
                raise SchemaNotFoundError(
                    f"Schema {key} is not in '{self.directory}' (from {self.origin}).",
                    hint=f"Add it there as '{url_to_relative_path(key)}', or unset {SCHEMA_DIR_ENV} to download "
                    "it into the user cache.",
                )
            self._download(key, path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SchemaNotFoundError(f"Schema file '{path}' for {key} cannot be read: {exc.strerror}.") from exc
        document = parse_json(data, f"Schema file '{path}' for {key}", error=SchemaNotFoundError,
                              max_bytes=MAX_SCHEMA_BYTES)  # fmt: skip
        self._cache[key] = document
        return document

    def _download(self, url: str, path: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # https only
                final = response.geturl()
                data = response.read(MAX_SCHEMA_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SchemaNotFoundError(
                f"Schema {url} is neither bundled with mlm-export nor in the cache '{self.directory}', and could "
                f"not be downloaded ({exc}).",
                hint=f"Work offline by pointing {SCHEMA_DIR_ENV} at a schema directory holding it (laid out like "
                "shared/schemas), or copy it into the cache as "
                f"'{self.directory / url_to_relative_path(url)}'.",
            ) from exc
        if urllib.parse.urlparse(final).scheme != "https":
            raise SchemaNotFoundError(f"Schema {url} redirected to {final}, which is not https; not stored.")
        parse_json(data, f"Schema {url}", error=SchemaNotFoundError, max_bytes=MAX_SCHEMA_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.resolve().is_relative_to(self.directory.resolve()):
            raise SchemaNotFoundError(f"Schema {url} would be written outside the cache '{self.directory}'.")
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(data)
        from mlm_export.files import file_mode

        os.chmod(handle.name, file_mode())
        os.replace(handle.name, path)

    def resource(self, url: str) -> Resource[Any]:
        """The schema at ``url`` as a ``referencing`` resource (draft-07 unless it says otherwise)."""
        from referencing import Resource
        from referencing.jsonschema import DRAFT7

        return Resource.from_contents(self.load(url), default_specification=DRAFT7)

    def registry(self) -> Registry[Any]:
        """A registry that retrieves every ``$ref`` through this store (never the network unless the cache)."""
        from referencing import Registry

        return Registry(retrieve=self.resource)  # type: ignore[call-arg]
