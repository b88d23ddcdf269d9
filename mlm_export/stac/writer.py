"""Write an Item to JSON atomically, with local asset hrefs made relative to the item file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mlm_export.errors import ConfigurationError, OutputError
from mlm_export.files import atomic_write
from mlm_export.stac.io import decode_href, encode_href

if TYPE_CHECKING:
    import pystac


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
    try:
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise OutputError(
            f"Cannot write '{path}': the document is not JSON data ({exc}).",
            hint="Pass JSON-safe values (numbers, strings, lists, dicts) in the item's fields.",
        ) from exc
    return write_text_atomic(text, path, overwrite=overwrite)


def write_text_atomic(text: str, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`mlm_export.files.atomic_write` (never half-written).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: the directory does not exist or is not writable, or the disk is full.
    """
    make_parent_directory(Path(path))  # as pystac's save_object does
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"), overwrite=overwrite)
    return Path(path)


def save_item(item: pystac.Item | Mapping[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Save ``item`` as JSON at ``path``, atomically, with local asset and link hrefs relative to it.

    When the Item has a local ``predecessor-version`` link, the earlier revisions are relinked to it
    (:func:`mlm_export.provenance.revisions.link_predecessors`).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: the directory cannot be created or is not writable (missing parents are created).
        ConfigurationError: an href carries credentials.

    .. versionadded:: 0.1
    """
    document = item_to_json_dict(item, path)
    target = write_json_atomic(document, path, overwrite=overwrite)
    if any(link.get("rel") == "predecessor-version" for link in document["links"]):
        from mlm_export.provenance.revisions import link_predecessors

        link_predecessors(target)  # the earlier revisions get successor-version / latest-version links
    return target
