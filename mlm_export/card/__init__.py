"""Model cards: an MLM Item rendered as a self-contained HTML page or a README-style Markdown card.

``render_card(item, fmt="html" | "markdown") -> str`` and ``write_card(item, path)``; see :mod:`.render`. This
package imports Jinja2; ``import mlm_export`` does not import it.
"""

from __future__ import annotations

from mlm_export.card.render import WrittenCard, map_svg_of, render_card, render_index, write_card

__all__ = ["WrittenCard", "map_svg_of", "render_card", "render_index", "write_card"]
