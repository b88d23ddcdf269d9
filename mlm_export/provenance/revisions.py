"""Model revisions (Version extension v1.2.0): one Item per run or checkpoint, linked oldest to newest.

Each Item of a chain has ``version``; ``predecessor-version`` / ``successor-version`` link its neighbours and
``latest-version`` links the newest Item (which has no such link to itself). ``deprecated: true`` marks superseded
Items when asked. The links are relative hrefs between Item files in the same tree, rewritten atomically by
:func:`relink` whenever the chain changes (a new revision, or one removed because its checkpoint rotated out), so
that no link points to a missing Item and ``latest-version`` always resolves.

By hand: ``export_item(..., version="2", previous="runs/v1.json")`` links the new Item to its predecessor;
:func:`mlm_export.save_item` then adds the ``successor-version``/``latest-version`` links to the earlier Items
(:func:`link_predecessors`). ``relink(paths, deprecate=True)`` also deprecates all but the newest.

.. versionadded:: 0.2
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlm_export.errors import ConfigurationError

VERSION_SCHEMA_URI = "https://stac-extensions.github.io/version/v1.2.0/schema.json"
PREDECESSOR = "predecessor-version"
SUCCESSOR = "successor-version"
LATEST = "latest-version"
VERSION_RELS = (PREDECESSOR, SUCCESSOR, LATEST)
#: Longest predecessor chain followed on disk (a guard against cycles and hostile Items).
MAX_CHAIN = 10_000
_JSON = "application/json"
#: Placeholders of a Lightning checkpoint version template.
DEFAULT_TEMPLATE = "epoch={epoch}-step={step}"


@dataclass(frozen=True)
class Revision:
    """What a new Item takes from its predecessor: the href to link and the collection to share."""

    version: str | None
    href: str | None = None
    collection: str | None = None
    collection_link: Mapping[str, Any] | None = None


def checkpoint_version(template: str | None, *, epoch: int, step: int, stem: str) -> str:
    """The ``version`` of a checkpoint's Item from ``template`` (placeholders ``{epoch}``, ``{step}``, ``{stem}``).

    Raises:
        ConfigurationError: the template names another placeholder.
    """
    try:
        return (template or DEFAULT_TEMPLATE).format(epoch=epoch, step=step, stem=stem)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigurationError(
            f"version template {template!r} cannot be filled ({exc}).",
            hint="Use the placeholders {epoch}, {step} and {stem}, e.g. 'v{epoch}.{step}'.",
        ) from exc


def check_version(version: Any) -> str:
    """``version`` as a non-empty string.

    Raises:
        ConfigurationError: not a non-empty string or number.
    """
    if isinstance(version, bool) or not isinstance(version, (str, int, float)) or not str(version).strip():
        raise ConfigurationError(f"version={version!r} is not a version.", hint="Give e.g. '1.2.0' or 'epoch-3'.")
    return str(version).strip()


def previous_revision(previous: Any) -> Revision:
    """Read the predecessor (a ``pystac.Item`` with a self href, an Item JSON path or URL).

    Raises:
        ConfigurationError: the predecessor cannot be read, is no Item, or has no location to link to.
    """
    if hasattr(previous, "to_dict") and hasattr(previous, "get_self_href"):
        href = previous.get_self_href()
        document = previous.to_dict(include_self_link=False, transform_hrefs=False)
    elif isinstance(previous, (str, os.PathLike)):
        href = os.fspath(previous)
        if urlparse(href).scheme in ("", "file"):
            href = str(Path(urlparse(href).path if href.startswith("file:") else href).resolve())
            document = _read(Path(href), "previous")
        else:
            document = {}
    else:
        raise ConfigurationError(
            f"previous={type(previous).__name__} is not an Item.",
            hint="Pass the earlier Item's JSON path, its URL, or a pystac.Item saved with a self href.",
        )
    if not href:
        raise ConfigurationError(
            "previous= is a pystac.Item without a self href: there is nothing to link to.",
            hint="Save it first (save_item) and pass its path.",
        )
    collection = document.get("collection") if isinstance(document.get("collection"), str) else None
    link = next(
        (dict(x) for x in document.get("links") or [] if isinstance(x, Mapping) and x.get("rel") == "collection"), None
    )
    if link is not None and urlparse(str(link.get("href"))).scheme == "" and not os.path.isabs(str(link["href"])):
        link["href"] = str((Path(href).parent / str(link["href"])).resolve())
    return Revision(_version_of(document), href, collection, link)


def _version_of(document: Mapping[str, Any]) -> str | None:
    value = (document.get("properties") or {}).get("version")
    return value if isinstance(value, str) else None


def _read(path: Path, argument: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{argument}='{path}' does not exist.", hint="Give the earlier Item's JSON.") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{argument}='{path}' is not a JSON Item ({exc}).", hint="Give an Item JSON.") from exc
    if not isinstance(document, dict) or document.get("type") != "Feature":
        raise ConfigurationError(f"{argument}='{path}' is not a STAC Item.", hint="Give an Item JSON file.")
    return document


def apply_revision(item: Any, version: str | None, previous: Revision | None) -> None:
    """Set ``version`` and the ``predecessor-version`` link on a new ``pystac.Item``."""
    import pystac

    if version is None and previous is None:
        return
    if version is not None:
        item.properties["version"] = version
    if previous is not None and previous.href:
        title = f"Version {previous.version}" if previous.version else "Previous version"
        item.add_link(pystac.Link(PREDECESSOR, previous.href, _JSON, title))
        if item.collection_id is None and previous.collection is not None:
            # The revisions of one model share the predecessor's collection (and its collection link).
            item.collection_id = previous.collection
            if previous.collection_link is not None and not item.get_links("collection"):
                item.add_link(pystac.Link.from_dict(dict(previous.collection_link)))
    if VERSION_SCHEMA_URI not in item.stac_extensions:
        item.stac_extensions.append(VERSION_SCHEMA_URI)


def _local_predecessor(document: Mapping[str, Any], path: Path) -> Path | None:
    for link in document.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == PREDECESSOR and isinstance(link.get("href"), str):
            href = link["href"]
            if urlparse(href).scheme not in ("", "file"):
                return None
            target = Path(urlparse(href).path) if href.startswith("file:") else Path(href)
            return target if target.is_absolute() else (path.parent / target).resolve()
    return None


def chain_of(path: str | os.PathLike[str]) -> list[Path]:
    """The Item files from the oldest existing predecessor to ``path``, following ``predecessor-version`` links."""
    chain = [Path(path).resolve()]
    seen = {chain[0]}
    while len(chain) < MAX_CHAIN:
        try:
            document = json.loads(chain[0].read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            break
        previous = _local_predecessor(document, chain[0]) if isinstance(document, dict) else None
        if previous is None or previous in seen or not previous.is_file():
            break
        chain.insert(0, previous)
        seen.add(previous)
    return chain


def link_predecessors(path: str | os.PathLike[str]) -> list[Path]:
    """After an Item with a local predecessor is saved at ``path``: relink its whole chain (see :func:`relink`)."""
    chain = chain_of(path)
    if len(chain) > 1:
        relink(chain)
    return chain


def _link(rel: str, target: Path, source: Path, version: str | None) -> dict[str, Any]:
    href = Path(os.path.relpath(target, source.parent)).as_posix()
    href = href if href.startswith("..") else f"./{href}"
    title = f"Version {version}" if version else None
    return {"rel": rel, "href": href, "type": _JSON, **({"title": title} if title else {})}


def relink(paths: Sequence[str | os.PathLike[str]], *, deprecate: bool = False) -> None:
    """Rewrite the version links of the Item files ``paths`` (oldest first), skipping files that are gone.

    Each Item gets ``predecessor-version``/``successor-version`` to its existing neighbours and ``latest-version``
    to the last one; earlier version links are replaced. With ``deprecate``, all but the newest get
    ``deprecated: true`` and the newest loses it. Files are rewritten atomically, and only when they change.
    """
    from mlm_export.stac.writer import write_json_atomic

    files = [Path(p).resolve() for p in paths if Path(p).is_file()]
    documents = [_read(p, "revision") for p in files]
    versions = [_version_of(d) for d in documents]
    for index, (path, document) in enumerate(zip(files, documents, strict=True)):
        before = json.dumps(document, sort_keys=True)
        links = [
            x for x in document.get("links") or [] if not (isinstance(x, Mapping) and x.get("rel") in VERSION_RELS)
        ]
        if index > 0:
            links.append(_link(PREDECESSOR, files[index - 1], path, versions[index - 1]))
        if index < len(files) - 1:
            links.append(_link(SUCCESSOR, files[index + 1], path, versions[index + 1]))
            links.append(_link(LATEST, files[-1], path, versions[-1]))
        document["links"] = links
        properties = document.setdefault("properties", {})
        if deprecate and index < len(files) - 1:
            properties["deprecated"] = True
        elif deprecate:
            properties.pop("deprecated", None)
        extensions = document.setdefault("stac_extensions", [])
        if VERSION_SCHEMA_URI not in extensions:
            extensions.append(VERSION_SCHEMA_URI)
        if json.dumps(document, sort_keys=True) != before:
            write_json_atomic(document, path, overwrite=True)


__all__ = [
    "DEFAULT_TEMPLATE",
    "LATEST",
    "PREDECESSOR",
    "SUCCESSOR",
    "VERSION_SCHEMA_URI",
    "Revision",
    "apply_revision",
    "chain_of",
    "check_version",
    "checkpoint_version",
    "link_predecessors",
    "previous_revision",
    "relink",
]
