"""Scientific references (Scientific extension v1.0.0): ``sci:doi``, ``sci:citation``, ``sci:publications``.

From the caller (``doi=``, ``citation=``, ``publications=``) and from torchgeo weights metadata, whose
``publication`` field is an arXiv URL: it becomes a ``cite-as`` link (added by the torchgeo hook) and the arXiv DOI
``10.48550/arXiv.<id>`` in ``sci:publications`` (arXiv registers that DOI for every paper). pystac's
``ScientificExtension`` writes the fields and the ``cite-as`` link of each DOI.

.. versionadded:: 0.2
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from mlm_export.errors import ConfigurationError

#: The DOI pattern of the Scientific extension schema (``sci:doi`` and ``sci:publications[].doi``).
DOI_PATTERN = re.compile(r"^10\.[0-9a-zA-Z]{4,}/[^\s]+$")
#: arXiv's DOI prefix: every arXiv paper has the DOI ``10.48550/arXiv.<id>``.
ARXIV_DOI_PREFIX = "10.48550/arXiv."
_ARXIV_ID = re.compile(r"^(?:abs|pdf|html)/(?P<id>\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?(?:\.pdf)?/?$")
_DOI_URL_HOSTS = ("doi.org", "dx.doi.org", "www.doi.org")


def normalise_doi(value: str, argument: str) -> str:
    """A bare DOI from ``10.x/y``, ``doi:10.x/y`` or ``https://doi.org/10.x/y``.

    Raises:
        ConfigurationError: the value is not a DOI.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{argument}={value!r} is not a DOI string.", hint="Give e.g. 10.1109/CVPR.2016.90.")
    text = value.strip()
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https") and parsed.hostname in _DOI_URL_HOSTS:
        text = parsed.path.lstrip("/")
    elif text.lower().startswith("doi:"):
        text = text[4:].strip()
    if not DOI_PATTERN.match(text):
        raise ConfigurationError(
            f"{argument}={value!r} is not a DOI (expected 10.<registrant>/<suffix>).",
            hint="Give the DOI itself, e.g. 10.1109/CVPR.2016.90 or https://doi.org/10.1109/CVPR.2016.90.",
        )
    return text


def arxiv_doi(url: str) -> str | None:
    """The DOI arXiv registers for the paper at ``url``, or None when ``url`` is no arXiv paper URL.

    ``https://arxiv.org/abs/2211.07044`` -> ``10.48550/arXiv.2211.07044``.
    """
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.hostname not in ("arxiv.org", "www.arxiv.org", "export.arxiv.org"):
        return None
    match = _ARXIV_ID.match(parsed.path.lstrip("/"))
    return f"{ARXIV_DOI_PREFIX}{match['id']}" if match else None


@dataclass(frozen=True)
class Science:
    """The scientific references of an Item (empty when nothing is known)."""

    doi: str | None = None
    citation: str | None = None
    publications: tuple[Mapping[str, str], ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.doi or self.citation or self.publications)

    def apply(self, item: Any) -> None:
        """Write the fields and ``cite-as`` links on a ``pystac.Item`` (and declare the extension)."""
        import pystac
        from pystac.extensions.scientific import ScientificExtension, doi_to_url

        if not self:
            return
        sci = ScientificExtension.ext(item, add_if_missing=True)
        if self.doi:
            sci.doi = self.doi
        if self.citation:
            sci.citation = self.citation
        if self.publications:
            # Written as dicts: pystac's Publication.to_dict writes null for a missing doi/citation.
            item.properties["sci:publications"] = [dict(p) for p in self.publications]
            for publication in self.publications:
                if publication.get("doi"):
                    item.add_link(pystac.Link("cite-as", doi_to_url(publication["doi"]), "text/html"))
        # pystac adds a cite-as link per DOI; a link given twice (a weights' arXiv URL and its DOI differ) is kept once.
        seen: set[tuple[str, str]] = set()
        kept = []
        for link in item.links:
            if (link.rel, link.href) not in seen:
                seen.add((link.rel, link.href))
                kept.append(link)
        item.links = kept


def science_from(
    *,
    doi: str | None = None,
    citation: str | None = None,
    publications: Sequence[str | Mapping[str, Any]] | None = None,
    publication_urls: Sequence[str] = (),
) -> Science:
    """Check and gather the caller's references plus the arXiv DOIs of ``publication_urls`` (weights metadata).

    Args:
        doi: DOI of the model itself (``sci:doi``).
        citation: how to cite the model (``sci:citation``).
        publications: DOIs, or dicts with ``doi`` and/or ``citation``, of papers describing the model.
        publication_urls: paper URLs (e.g. torchgeo's ``meta["publication"]``); arXiv ones add their DOI.

    Raises:
        ConfigurationError: a malformed DOI, an empty citation, or a publication with neither DOI nor citation.
    """
    if citation is not None and (not isinstance(citation, str) or not citation.strip()):
        raise ConfigurationError(f"citation={citation!r} must be non-empty text.", hint="Give the reference text.")
    entries: list[dict[str, str]] = []
    for index, entry in enumerate(publications or ()):
        where = f"publications[{index}]"
        if isinstance(entry, str):
            entries.append({"doi": normalise_doi(entry, where)})
            continue
        if not isinstance(entry, Mapping) or not (entry.get("doi") or entry.get("citation")):
            raise ConfigurationError(
                f"{where}={entry!r} needs a 'doi' or a 'citation'.",
                hint="Give a DOI string or {'doi': '10.x/y', 'citation': 'Author et al. (2024) ...'}.",
            )
        publication = {"citation": str(entry["citation"])} if entry.get("citation") else {}
        if entry.get("doi"):
            publication["doi"] = normalise_doi(str(entry["doi"]), f"{where}['doi']")
        entries.append(publication)
    for url in publication_urls:
        derived = arxiv_doi(url)
        if derived and all(e.get("doi") != derived for e in entries):
            entries.append({"doi": derived})
    return Science(
        doi=normalise_doi(doi, "doi") if doi is not None else None,
        citation=citation.strip() if citation else None,
        publications=tuple(entries),
    )


__all__ = ["ARXIV_DOI_PREFIX", "DOI_PATTERN", "Science", "arxiv_doi", "normalise_doi", "science_from"]
