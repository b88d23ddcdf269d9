"""Offline JSON-schema store: a directory laid out like ``../shared/schemas`` (URL without scheme, INDEX.json).

Directory resolution: the ``schema_dir`` argument, then ``$MLM_EXPORT_SCHEMA_DIR``, then the user cache directory
(``platformdirs.user_cache_dir("mlm-export")/schemas``). A schema missing from a directory given by argument or
environment is an error; a schema missing from the cache is downloaded by URL into it (with a timeout).
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from mlm_export.errors import SchemaNotFoundError

SCHEMA_DIR_ENV = "MLM_EXPORT_SCHEMA_DIR"
DOWNLOAD_TIMEOUT_S = 20.0


def default_cache_dir() -> Path:
    """The user cache directory for downloaded schemas."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mlm-export")) / "schemas"


def url_to_relative_path(url: str) -> str:
    """``https://host/a/b.json#`` -> ``host/a/b.json``."""
    bare = url.split("#", 1)[0]
    return bare.split("://", 1)[-1]


class SchemaStore:
    """Loads schemas by URL from one directory, downloading into it only when it is the cache."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        if directory is not None:
            self.directory, self.origin, self.download = Path(directory), "the schema_dir argument", False
        elif os.environ.get(SCHEMA_DIR_ENV):
            self.directory, self.origin, self.download = Path(os.environ[SCHEMA_DIR_ENV]), f"${SCHEMA_DIR_ENV}", False
        else:
            self.directory, self.origin, self.download = default_cache_dir(), "the user cache", True
        if not self.download and not self.directory.is_dir():
            raise SchemaNotFoundError(
                f"Schema directory '{self.directory}' (from {self.origin}) does not exist.",
                hint=f"Point {SCHEMA_DIR_ENV} or schema_dir at a directory laid out like shared/schemas.",
            )
        self._cache: dict[str, Any] = {}

    @cached_property
    def index(self) -> Mapping[str, str]:
        """INDEX.json of the directory (URL -> relative path), empty when absent."""
        index_path = self.directory / "INDEX.json"
        if index_path.is_file():
            return json.loads(index_path.read_text(encoding="utf-8"))
        return {}

    def _path_for(self, url: str) -> Path:
        bare = url.split("#", 1)[0]
        relative = self.index.get(bare) or self.index.get(bare + "#") or url_to_relative_path(bare)
        return self.directory / relative

    def load(self, url: str) -> Any:
        """Return the parsed schema at ``url``.

        Raises:
            SchemaNotFoundError: not in the directory and (unless it is the cache) not downloadable.
        """
        key = url.split("#", 1)[0]
        if key in self._cache:
            return self._cache[key]
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
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SchemaNotFoundError(f"Schema file '{path}' for {key} cannot be read: {exc}.") from exc
        self._cache[key] = document
        return document

    def _download(self, url: str, path: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 - https schema URLs
                data = response.read()
            json.loads(data)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SchemaNotFoundError(
                f"Schema {url} is not in the cache '{self.directory}' and could not be downloaded ({exc}).",
                hint=f"Work offline by pointing {SCHEMA_DIR_ENV} at a schema directory (e.g. shared/schemas).",
            ) from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(data)
        from mlm_export.stac.writer import new_file_mode

        os.chmod(handle.name, new_file_mode())
        os.replace(handle.name, path)

    def resource(self, url: str) -> Resource[Any]:
        """The schema at ``url`` as a ``referencing`` resource (draft-07 unless it says otherwise)."""
        return Resource.from_contents(self.load(url), default_specification=DRAFT7)

    def registry(self) -> Registry[Any]:
        """A registry that retrieves every ``$ref`` through this store (never the network unless the cache)."""
        return Registry(retrieve=self.resource)  # type: ignore[call-arg]
