"""Write an Item to JSON atomically, with local asset hrefs made relative to the item file.

:func:`save_item` never writes an Item that :func:`mlm_export.validate_item` would reject for where it lies: a local
asset outside the Item's directory (and ``allow_outside``) is refused before anything is written, and a ``collection``
link to a local Collection file that does not exist is left out, with the ``collection`` field STAC allows only
beside such a link (a warning says so).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mlm_export.errors import ConfigurationError, OutputError
from mlm_export.files import atomic_write
from mlm_export.stac.io import decode_href, encode_href, resolve_href

if TYPE_CHECKING:
    import pystac

logger = logging.getLogger(__name__)
#: Links of an Item that tie it to its Collection.
_COLLECTION_RELS = ("collection", "parent", "root")


def check_href(href: str, where: str) -> None:
    """Refuse an href that carries credentials (``user:password@``).

    Raises:
        ConfigurationError: the href has a password, or a user name on a remote URL.
    """
    parsed = urlparse(href)
    if parsed.password is not None or (parsed.username is not None and parsed.scheme not in ("", "file")):
        raise ConfigurationError(
            f"{where} href {parsed.scheme}://{parsed.hostname}/... contains credentials.",
            hint="Remove user:password@ from the URL; publish a URL that needs no secret.",
        )


def _relative(href: str, item_path: Path) -> str:
    parsed = urlparse(href)
    if parsed.scheme not in ("", "file") or (parsed.scheme == "" and not os.path.isabs(href)):
        return href
    absolute = decode_href(href) if parsed.scheme == "file" else href  # a plain absolute path is a raw path
    # os.path.relpath, not pystac's make_relative_href: that parses the path as a URL and drops a '#...' tail.
    relative = Path(os.path.relpath(absolute, item_path.parent)).as_posix()
    return encode_href(relative if relative.startswith("../") else f"./{relative}")


def item_to_json_dict(item: pystac.Item | Mapping[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON document of ``item`` as saved at ``path``: local hrefs relative, credentials refused."""
    item_path = Path(path).resolve()
    document = dict(item) if isinstance(item, Mapping) else item.to_dict(include_self_link=False, transform_hrefs=False)
    assets = {}
    for key, asset in (document.get("assets") or {}).items():
        asset = dict(asset)
        check_href(asset["href"], f"asset {key!r}")
        asset["href"] = _relative(asset["href"], item_path)
        assets[key] = asset
    document["assets"] = assets
    links = []
    for link in document.get("links") or []:
        link = dict(link)
        check_href(link["href"], f"link rel={link.get('rel')!r}")
        link["href"] = _relative(link["href"], item_path)
        links.append(link)
    document["links"] = links
    return document


def make_parent_directory(target: Path) -> None:
    """Create the parent directories of ``target`` (as pystac's ``save_object`` does).

    Raises:
        OutputError: a parent is a file, or the directory cannot be created.
    """
    directory = target.parent if str(target.parent) else Path(".")
    if directory.is_dir():
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise OutputError(
            f"Cannot create output directory '{directory}': a parent is a file.", hint="Choose another path."
        ) from exc
    except OSError as exc:
        raise OutputError(
            f"Cannot create output directory '{directory}': {exc.strerror}.", hint="Choose a writable directory."
        ) from exc


def write_json_atomic(document: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``document`` to ``path`` with :func:`mlm_export.files.atomic_write` (never half-written).

    A symlinked ``path`` is written through: the file it points to is what gets written.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: the directory does not exist or is not writable, or the disk is full.
    """
    return write_text_atomic(json_text(document, path), path, overwrite=overwrite)


def json_text(document: Any, path: str | os.PathLike[str]) -> str:
    """``document`` as the JSON text mlm-export writes (2-space indent, UTF-8, final newline).

    Raises:
        OutputError: ``document`` is not JSON data (the message names ``path``).
    """
    try:
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise OutputError(
            f"Cannot write '{path}': the document is not JSON data ({exc}).",
            hint="Pass JSON-safe values (numbers, strings, lists, dicts) in the item's fields.",
        ) from exc


def write_text_atomic(text: str, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`mlm_export.files.atomic_write` (never half-written).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: the directory does not exist or is not writable, or the disk is full.
    """
    make_parent_directory(Path(path))  # as pystac's save_object does
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"), overwrite=overwrite)
    return Path(path)


def refuse_outside(
    document: Mapping[str, Any], path: str | os.PathLike[str], allow_outside: Sequence[str | os.PathLike[str]] = ()
) -> None:
    """Refuse to save ``document`` at ``path`` when a local asset would lie outside the Item's directory.

    The rule is :func:`mlm_export.validate_item`'s (``..`` and symlinks followed): such an Item would be reported
    "points outside", so it is not written.

    Raises:
        OutputError: an asset's file lies outside the Item's directory and every ``allow_outside`` directory.
    """
    from mlm_export.provenance.container import is_registry_reference

    item_path = Path(os.path.abspath(path))
    for key, asset in (document.get("assets") or {}).items():
        href = asset.get("href") if isinstance(asset, Mapping) else None
        if not isinstance(href, str) or is_registry_reference(asset):
            continue
        resolved = resolve_href(href, item_path.parent, allow_outside=allow_outside)
        if resolved.kind == "outside":
            folder = resolved.path.parent if resolved.path is not None else "its directory"
            raise OutputError(
                f"Asset {key!r} ({href!r}) lies outside the directory of the Item '{path}', so validate would "
                "reject the Item; it was not written.",
                hint=f"Write the Item beside the artifact (in '{folder}'), write the artifact beside the Item "
                "(artifact_dir=), or pass allow_outside=[DIR] (--allow-outside DIR) here and the same to "
                "validate, card and catalog.",
            )


def _missing_collection_links(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """``document`` without its links to a local Collection file that does not exist, with a warning.

    ``collection`` goes too when no ``collection`` link is left: STAC allows the field only beside one.
    """
    missing: list[str] = []
    for link in document.get("links") or []:
        href = link.get("href")
        if link.get("rel") not in _COLLECTION_RELS or not isinstance(href, str):
            continue
        resolved = resolve_href(href, path.parent, confine=False)
        if resolved.path is not None and not resolved.path.exists():
            missing.append(href)
    if not missing:
        return document
    links = [x for x in document["links"] if not (x.get("rel") in _COLLECTION_RELS and x.get("href") in missing)]
    kept = dict(document, links=links)
    collection = kept.get("collection")
    if collection is not None and not any(x.get("rel") == "collection" for x in links):
        del kept["collection"]
    logger.warning(
        "The Item '%s' names the collection %r, but its Collection file %s does not exist: the Item is written "
        "without the link and without the collection field (STAC allows the field only beside a link). Build a "
        "catalog with mlm-export catalog --id (build_catalog(collection_id=)), give the Collection's URL as a "
        "collection link, or write the Collection first.",
        path, collection, " / ".join(sorted({repr(h) for h in missing})),
    )  # fmt: skip
    return kept


def save_item(
    item: pystac.Item | Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Save ``item`` as JSON at ``path``, atomically, with local asset and link hrefs relative to it.

    An Item is never written where :func:`mlm_export.validate_item` would reject it: a local asset outside the
    directory of ``path`` (and of every ``allow_outside`` directory) is refused. A ``collection`` link to a local
    Collection file that does not exist is left out, and then the ``collection`` field too (STAC allows it only
    beside a ``collection`` link), with a warning; a URL is kept. When the Item has a local ``predecessor-version``
    link, the earlier revisions are relinked to it (:func:`mlm_export.provenance.revisions.link_predecessors`).

    Args:
        item: the Item (``pystac.Item`` or dict).
        path: where to write it.
        overwrite: replace an existing file.
        allow_outside: directories besides the Item's own that its local assets may lie in (pass the same to
            validate, card and catalog).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: the directory cannot be created or is not writable (missing parents are created), or a local
            asset lies outside the Item's directory and ``allow_outside``.
        ConfigurationError: an href carries credentials.

    .. versionadded:: 0.1
    """
    document = item_to_json_dict(item, path)
    refuse_outside(document, path, allow_outside)
    return _write_item(_missing_collection_links(document, Path(os.path.abspath(path))), path, overwrite)


def save_run_item(item: pystac.Item | Mapping[str, Any], path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """:func:`save_item` for an Item whose Collection file is written right after it: its links to it are kept.

    For a Lightning run's Collection (:mod:`mlm_export.provenance.run_collection`).
    """
    document = item_to_json_dict(item, path)
    refuse_outside(document, path)
    return _write_item(document, path, overwrite)


def _write_item(document: dict[str, Any], path: str | os.PathLike[str], overwrite: bool) -> Path:
    target = write_json_atomic(document, path, overwrite=overwrite)
    if any(link.get("rel") == "predecessor-version" for link in document["links"]):
        from mlm_export.provenance.revisions import link_predecessors

        link_predecessors(target)  # the earlier revisions get successor-version / latest-version links
    return target
