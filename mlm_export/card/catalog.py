"""Cards for a whole catalog: one HTML card beside each Item of a Collection, and an index page linking them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mlm_export.card.render import prepare_card, render, render_index
from mlm_export.card.view import Card, as_dict, as_list, text
from mlm_export.errors import ConfigurationError
from mlm_export.stac.validate import read_json_object

INDEX_FILE = "index.html"


def _item_paths(collection_path: Path) -> list[Path]:
    """The local Item files a Collection links (rel=item), each inside the Collection's directory."""
    root = collection_path.parent.resolve()
    collection = read_json_object(collection_path, "Collection file", ConfigurationError)
    paths = []
    for link in as_list(collection.get("links")):
        link = as_dict(link)
        href = text(link.get("href"))
        if text(link.get("rel")) != "item" or not href or "://" in href:
            continue
        path = (root / href).resolve()
        if not path.is_relative_to(root):
            raise ConfigurationError(
                f"{collection_path}: item link '{href}' points outside the catalog directory.",
                hint="Cards are written only beside Items inside the catalog.",
            )
        paths.append(path)
    return paths


def write_catalog_cards(
    collection: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    schema_dir: str | os.PathLike[str] | None = None,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``<item>.html`` beside each Item of the Collection file ``collection`` and ``index.html`` beside it.

    Args:
        collection: the ``collection.json`` of a catalog (e.g. written by :func:`mlm_export.build_catalog`).
        overwrite: replace existing card files.
        schema_dir: offline schema directory for the cards' validation status.
        allow_outside: directories besides each Item's own that its local hrefs may point into (see
            :func:`mlm_export.validate_item`); a catalog written by ``build_catalog`` needs none.

    Returns:
        The path of the index page.

    Raises:
        ConfigurationError: the Collection cannot be read, or links an Item outside its directory.
        OutputExistsError: a card or the index exists and ``overwrite`` is False.

    .. versionadded:: 0.2
    """
    from mlm_export.stac.writer import write_text_atomic

    collection_path = Path(collection)
    root = collection_path.parent.resolve()
    entries: list[tuple[Card, str]] = []
    for item_path in _item_paths(collection_path):
        card = prepare_card(item_path, schema_dir=schema_dir, allow_outside=allow_outside)
        card_path = item_path.with_suffix(".html")
        write_text_atomic(render(card, "html"), card_path, overwrite=overwrite)
        entries.append((card, card_path.relative_to(root).as_posix()))
    title = text(read_json_object(collection_path, "Collection file", ConfigurationError).get("title"))
    return write_text_atomic(render_index(entries, title or "Models"), root / INDEX_FILE, overwrite=overwrite)
