"""Gather the provenance arguments of ``export_item`` (checked before any dry-run) and apply them to an Item.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlm_export.provenance.container import CONTAINER_KEY, ContainerReference, parse_container
from mlm_export.provenance.revisions import Revision, apply_revision, check_version, previous_revision
from mlm_export.provenance.science import Science, science_from
from mlm_export.provenance.source_code import SOURCE_CODE_KEY, SourceCode, describe_source_code, given_source_code

#: Link relations whose arXiv hrefs add the paper's DOI to ``sci:publications``.
CITATION_RELS = ("cite-as",)


@dataclass(frozen=True)
class Provenance:
    """Source code, container, revision and scientific references of one Item."""

    source_code: SourceCode | None = None
    container: ContainerReference | None = None
    version: str | None = None
    previous: Revision | None = None
    science: Science = field(default_factory=Science)

    def apply(self, item: Any) -> None:
        """Add the assets, fields, links and extensions to a built ``pystac.Item``."""
        import pystac

        if self.source_code is not None and self.source_code.href is None:
            hyper = item.properties.setdefault("mlm:hyperparameters", {})
            hyper.update(self.source_code.hyperparameters())
        for key, content in ((SOURCE_CODE_KEY, self.source_code), (CONTAINER_KEY, self.container)):
            if content is not None and (key != SOURCE_CODE_KEY or self.source_code.href is not None):
                item.add_asset(key, pystac.Asset.from_dict(content.asset_dict()))
        apply_revision(item, self.version, self.previous)
        self.science.apply(item)


def _cited_urls(links: Sequence[Any] | None) -> list[str]:
    urls = []
    for link in links or ():
        rel = link.get("rel") if isinstance(link, Mapping) else getattr(link, "rel", None)
        href = link.get("href") if isinstance(link, Mapping) else getattr(link, "href", None)
        if rel in CITATION_RELS and isinstance(href, str):
            urls.append(href)
    return urls


def provenance_from(
    model: Any,
    *,
    model_class: Any = None,
    container: str | None = None,
    version: Any = None,
    previous: Any = None,
    doi: str | None = None,
    citation: str | None = None,
    publications: Sequence[str | Mapping[str, Any]] | None = None,
    links: Sequence[Any] | None = None,
    source_code: Any = None,
) -> Provenance:
    """Check the provenance arguments of :func:`mlm_export.export_item` and find the model's source code.

    Raises:
        ConfigurationError: a malformed source-code URL, container reference, version, DOI or predecessor.
    """
    if source_code is not None:  # given: wins, and nothing is detected
        code = given_source_code(source_code, model, model_class=model_class)
    else:
        code = describe_source_code(model, model_class=model_class)
    return Provenance(
        source_code=code,
        container=parse_container(container) if container is not None else None,
        version=check_version(version) if version is not None else None,
        previous=previous_revision(previous) if previous is not None else None,
        science=science_from(
            doi=doi, citation=citation, publications=publications, publication_urls=_cited_urls(links)
        ),
    )


__all__ = ["Provenance", "provenance_from"]
