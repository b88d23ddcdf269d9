"""The STAC Collection of one training run: its checkpoint Items, written beside them and kept in sync.

The Lightning callback with ``on="checkpoint"`` writes one Item per checkpoint (``<stem>.json`` next to
``<stem>.ckpt``) and, in the same directory, ``collection.json``: extent and MLM summaries of the Items (from
:func:`mlm_export.stac.collection.collection_document`) and one ``item`` link per existing Item. Every Item has
``collection`` set to the Collection's id and ``root``/``parent``/``collection`` links to ``collection.json``.

The Collection is rewritten atomically (:func:`mlm_export.stac.writer.write_json_atomic`) whenever the Items
change: after a new Item is saved, and before the Item of a rotated-out checkpoint is deleted, so that a reader never
sees an ``item`` link to a missing file. It is validated against the STAC and MLM schemas before it is written.

.. versionadded:: 0.2
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlm_export.errors import ConfigurationError

#: Links of an Item that tie it to its Collection (replaced by :func:`join_collection`).
STRUCTURAL_RELS = ("root", "parent", "collection")
_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]*$")
_JSON = "application/json"


def check_collection_id(value: Any, argument: str = "collection") -> str:
    """``value`` as a Collection id (letters, digits, ``_.-``, not starting with a dot or dash).

    Raises:
        ConfigurationError: not such a string.
    """
    if not isinstance(value, str) or not _ID.match(value):
        raise ConfigurationError(
            f"{argument}={value!r} is not a collection id.",
            hint="Use letters, digits, '_', '.' and '-' (e.g. 'segmentation-run-3'); it is also a file-safe name.",
        )
    return value


def run_collection_id(logger_name: Any, logger_version: Any, directory: Path) -> str:
    """The default Collection id of a run.

    ``<logger name>-<version>`` (``version_N`` for a number), else the name of the directory holding the Items.
    """
    if isinstance(logger_name, str) and logger_name and logger_version is not None:
        version = f"version_{logger_version}" if isinstance(logger_version, int) else str(logger_version)
        text = f"{logger_name}-{version}"
    else:
        text = directory.resolve().name or "run"
    slug = re.sub(r"[^0-9A-Za-z_.-]+", "-", text).strip("-.")
    return slug or "run"


def join_collection(document: Mapping[str, Any], collection_id: str, collection_path: Path) -> dict[str, Any]:
    """``document`` (an Item dict) in the Collection ``collection_id`` stored at ``collection_path``.

    ``collection`` is set and ``root``/``parent``/``collection`` links point to ``collection_path`` (absolute:
    :func:`mlm_export.save_item` makes them relative to the Item file).
    """
    joined = dict(document)
    links = [x for x in document.get("links") or [] if not (isinstance(x, Mapping) and x.get("rel") in STRUCTURAL_RELS)]
    href = str(collection_path.resolve())
    joined["links"] = [{"rel": rel, "href": href, "type": _JSON} for rel in STRUCTURAL_RELS] + links
    joined["collection"] = collection_id
    return joined


def write_run_collection(
    collection_path: Path,
    collection_id: str,
    item_paths: Sequence[str | os.PathLike[str]],
    *,
    title: str | None = None,
    description: str | None = None,
    schema_dir: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Write (atomically, validated) the Collection of the Item files ``item_paths`` that exist.

    The extent covers those Items and there is one ``item`` link per Item, relative to ``collection_path``. With no
    Item left, the Collection file is removed and None is returned.

    Raises:
        ItemValidationError: the Collection does not validate (the file is left as it was).
        OutputError: the file cannot be written.
    """
    from mlm_export.stac.collection import collection_document, raise_invalid
    from mlm_export.stac.entries import read_entry
    from mlm_export.stac.validate import validate_item
    from mlm_export.stac.writer import item_to_json_dict, write_json_atomic

    existing = [Path(p) for p in dict.fromkeys(os.fspath(p) for p in item_paths) if Path(p).is_file()]
    if not existing:
        collection_path.unlink(missing_ok=True)
        return None
    entries = [read_entry(path) for path in existing]
    document = collection_document(entries, collection_id, title, description)
    item_links = iter(x for x in document["links"] if x["rel"] == "item")
    for path, link in zip(existing, item_links, strict=True):
        link["href"] = str(path.resolve())  # collection_document assumes the catalog layout <id>/<id>.json
    document = item_to_json_dict(document, collection_path)  # the same relative hrefs as an Item's
    raise_invalid(
        validate_item(document, schema_dir, check_files=False),
        f"The collection {collection_id!r} ('{collection_path}')",
        "The collection file was not changed.",
    )
    return write_json_atomic(document, collection_path, overwrite=True)


__all__ = [
    "STRUCTURAL_RELS",
    "check_collection_id",
    "join_collection",
    "run_collection_id",
    "write_run_collection",
]
