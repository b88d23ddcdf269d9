"""Render model cards (HTML and Markdown) from Items with Jinja2 templates shipped as package data.

HTML templates are autoescaped; the Markdown environment escapes every printed value with :func:`markdown_text`
(HTML-escaped and Markdown punctuation backslash-escaped), so that a class named ``<script>`` or ``| x |`` is text in
both. Only :class:`markupsafe.Markup` built here (the map SVG, the CSS) passes through unescaped.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
from markupsafe import Markup

from mlm_export import __version__
from mlm_export.card.map import FOOTPRINT_COLOUR, map_svg
from mlm_export.card.view import Card, build_card
from mlm_export.errors import ConfigurationError, MLMExportError

Format = Literal["html", "markdown"]
#: Classes shown before the rest are folded into a <details> element.
CLASSES_SHOWN = 25
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~#!])")
_SUFFIXES: dict[str, Format] = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown"}


def markdown_text(value: Any) -> str:
    """A value as inert Markdown text: HTML-escaped, one line, Markdown punctuation backslash-escaped."""
    if isinstance(value, Markup):
        return str(value)
    if value is None:
        return ""
    one_line = re.sub(r"\s+", " ", str(value))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def _preformatted(value: Any) -> Markup:
    """Text for inside ``<pre>`` of a Markdown card: HTML-escaped (quotes kept readable)."""
    return Markup(html.escape(str(value), quote=False))


@lru_cache(maxsize=2)
def _environment(fmt: Format) -> jinja2.Environment:
    loader = jinja2.PackageLoader("mlm_export.card", "templates")
    if fmt == "html":
        environment = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    else:
        environment = jinja2.Environment(
            loader=loader, autoescape=False, finalize=markdown_text, trim_blocks=True, lstrip_blocks=True
        )
    environment.filters["pre"] = _preformatted
    environment.globals.update(version=__version__, classes_shown=CLASSES_SHOWN, footprint_colour=FOOTPRINT_COLOUR)
    return environment


def _validate(card: Card, item: Any, schema_dir: Any, check_files: bool, allow_outside: Sequence[Any]) -> None:
    """Fill the card's validation status and problems from :func:`mlm_export.validate_item`."""
    from mlm_export.stac.validate import validate_item

    try:
        report = validate_item(item, schema_dir, check_files=check_files, allow_outside=allow_outside)
    except MLMExportError as exc:
        card.validation = "not checked"
        card.notes.append(f"Validation could not run: {exc.message}")
        return
    unread = [p for p in report.problems if _schema_unread(p)]
    found = [p for p in report.problems if not _schema_unread(p)]
    card.notes.extend(f"Not checked against {p.schema}: it could not be read." for p in unread)
    card.validation = "valid" if report.valid else "invalid" if found else "not checked"
    card.problems[:0] = [str(problem) for problem in found]


def _schema_unread(problem: Any) -> bool:
    """Whether ``problem`` says an extension schema could not be read (validation could not run, not a fault)."""
    return problem.source == "schema" and problem.message.startswith("not checked: ")


def prepare_card(
    item: Any,
    *,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
    check_files: bool = True,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
) -> Card:
    """The view model of ``item`` (a ``pystac.Item``, dict or JSON path), with its validation report.

    ``allow_outside``: directories besides the Item's own that its local hrefs may point into (as in
    :func:`mlm_export.validate_item`).

    Raises:
        ItemValidationError: ``item`` is not a readable JSON object.
    """
    from mlm_export.stac.validate import read_item_document

    document, _, _ = read_item_document(item)
    card = build_card(document)
    card.problems.extend(card.footprint.problems)
    if validate:
        _validate(card, item, schema_dir, check_files, allow_outside)
    return card


def _format(fmt: str) -> Format:
    if fmt not in ("html", "markdown"):
        raise ConfigurationError(f"fmt={fmt!r} is not a card format.", hint="Use fmt='html' or fmt='markdown'.")
    return fmt  # type: ignore[return-value]


def render(card: Card, fmt: Format = "html", *, map_href: str = "map.svg") -> str:
    """The card as an HTML page or a Markdown document (whose map is the SVG file at ``map_href``)."""
    fmt = _format(fmt)
    template = _environment(fmt).get_template("card.html.j2" if fmt == "html" else "card.md.j2")
    svg = Markup(map_svg(card.footprint)) if fmt == "html" else None
    return template.render(card=card, map_svg=svg, map_href=map_href)


def render_card(
    item: Any,
    fmt: Format = "html",
    *,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
    check_files: bool = True,
    map_href: str = "map.svg",
    allow_outside: Sequence[str | os.PathLike[str]] = (),
) -> str:
    """Render an MLM Item as a model card.

    Args:
        item: a ``pystac.Item``, a dict, or the path of an Item (or Collection) JSON file. Untrusted: every value
            is escaped.
        fmt: ``"html"`` (one self-contained page: inline CSS and SVG, no script, no network) or ``"markdown"``
            (README-style; its map is an SVG file, see :func:`map_svg_of` and :func:`write_card`).
        validate: validate the Item (:func:`mlm_export.validate_item`) and show the result and its problems.
        schema_dir: offline schema directory for the validation.
        check_files: let the validation check local asset files (size, checksum).
        map_href: Markdown only: where the map SVG is, relative to the Markdown file.
        allow_outside: directories besides the Item's own that its local hrefs may point into (same meaning as
            :func:`mlm_export.validate_item`'s); elsewhere they are reported, never opened.

    Returns:
        The card's text.

    Raises:
        ItemValidationError: ``item`` is not a readable JSON object.
        ConfigurationError: ``fmt`` is not a card format.

    .. versionadded:: 0.2
    """
    fmt = _format(fmt)
    card = prepare_card(
        item, validate=validate, schema_dir=schema_dir, check_files=check_files, allow_outside=allow_outside
    )
    return render(card, fmt, map_href=map_href)


def map_svg_of(item: Any) -> str:
    """The footprint map of ``item`` as a standalone SVG document (what the Markdown card links to)."""
    from mlm_export.stac.validate import read_item_document

    return map_svg(build_card(read_item_document(item)[0]).footprint, standalone=True)


@dataclass(frozen=True)
class WrittenCard:
    """What :func:`write_card` wrote: the card, the map beside a Markdown card, and the validation outcome."""

    path: Path
    map_path: Path | None
    card: Card

    @property
    def valid(self) -> bool:
        """True when the Item was validated and found valid."""
        return self.card.validation == "valid"


def card_format(path: str | os.PathLike[str]) -> Format:
    """The card format a file name asks for (``.html``/``.htm`` or ``.md``/``.markdown``)."""
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigurationError(
            f"Cannot tell the card format of '{path}' from its suffix.", hint="Name it card.html or card.md."
        )
    return fmt


def write_card(
    item: Any,
    output: str | os.PathLike[str],
    *,
    fmt: Format | None = None,
    overwrite: bool = False,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
    check_files: bool = True,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
) -> WrittenCard:
    """Write the card of ``item`` to ``output``; a Markdown card gets its map as ``<stem>-map.svg`` beside it.

    Files are written through a temporary file and renamed, so no half-written card is left behind. The other
    arguments are :func:`render_card`'s.

    Raises:
        ConfigurationError: the format cannot be told from ``output``'s suffix.
        OutputExistsError: a file exists and ``overwrite`` is False (nothing is written).
        OutputError: the directory does not exist or is not writable.
        ItemValidationError: ``item`` is not a readable JSON object.

    .. versionadded:: 0.2
    """
    from mlm_export.errors import OutputExistsError
    from mlm_export.stac.writer import write_text_atomic

    output = Path(output)
    fmt = _format(fmt) if fmt else card_format(output)
    map_path = output.with_name(f"{output.stem}-map.svg") if fmt == "markdown" else None
    for target in (output, map_path):
        if target is not None and target.exists() and not overwrite:
            raise OutputExistsError(f"Output '{target}' already exists.", hint="Pass --overwrite or choose another -o.")
    card = prepare_card(
        item, validate=validate, schema_dir=schema_dir, check_files=check_files, allow_outside=allow_outside
    )
    text = render(card, fmt, map_href=map_path.name if map_path else "map.svg")
    if map_path is not None:
        write_text_atomic(map_svg(card.footprint, standalone=True), map_path, overwrite=True)
    write_text_atomic(text, output, overwrite=True)
    return WrittenCard(output, map_path, card)


def render_index(cards: Iterable[tuple[Card, str]], title: str = "Models") -> str:
    """An HTML index page linking cards: ``(card, relative href)`` pairs."""
    template = _environment("html").get_template("index.html.j2")
    return template.render(entries=list(cards), title=title)
