"""The ``mlm:container`` asset: the OCI image that runs the model (registry, name, tag or digest).

The reference is checked against the OCI distribution reference grammar (the one ``docker pull`` uses) and is never
pulled. Its href is a registry reference, not a file or URL: :func:`is_registry_reference` tells the href checks of
``validate``, ``catalog`` and ``load_model`` to treat such an asset as remote.

.. versionadded:: 0.2
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlm_export.errors import ConfigurationError

#: The asset key the MLM README recommends for the container.
CONTAINER_KEY = "mlm:container"
#: Media type of the container asset (MLM "Container Asset").
OCI_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
#: Roles of the container asset.
CONTAINER_ROLES = ("runtime", "mlm:inference-runtime")
#: Registry of a reference without one (the rule of docker and podman).
DEFAULT_REGISTRY = "docker.io"

# OCI distribution reference grammar (github.com/distribution/reference, regexp.go).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<registry>{_DOMAIN})/)?(?P<name>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_NAME_MAX = 255


@dataclass(frozen=True)
class ContainerReference:
    """A parsed image reference; :attr:`href` is the full ``registry/name[:tag][@digest]``."""

    registry: str
    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def href(self) -> str:
        """The full reference, registry included."""
        text = f"{self.registry}/{self.name}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def asset_dict(self) -> dict[str, Any]:
        """The STAC asset object (key :data:`CONTAINER_KEY`)."""
        pinned = f"digest {self.digest}" if self.digest else f"tag {self.tag}"
        return {
            "href": self.href,
            "type": OCI_MEDIA_TYPE,
            "title": "Inference container image",
            "description": f"OCI image {self.name} on {self.registry}, {pinned} (a registry reference, not a file).",
            "roles": list(CONTAINER_ROLES),
        }


def parse_container(reference: str, *, argument: str = "container") -> ContainerReference:
    """Check ``reference`` against the OCI reference grammar and split it.

    A reference without a registry gets :data:`DEFAULT_REGISTRY` (and ``library/`` for a one-part name), as
    ``docker pull`` reads it. A tag or a digest is required, so that the Item names one image.

    Raises:
        ConfigurationError: not a string, not a reference, a name over 255 characters, upper-case letters in the
            name, or neither tag nor digest.
    """
    hint = "Give registry/name:tag, e.g. ghcr.io/org/model:1.0, or registry/name@sha256:<64 hex>."
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigurationError(f"{argument}={reference!r} is not an image reference.", hint=hint)
    text = reference.strip()
    if "://" in text:
        raise ConfigurationError(f"{argument}={text!r} is a URL, not an image reference (no scheme).", hint=hint)
    match = _REFERENCE.match(text)
    if match is None:
        raise ConfigurationError(f"{argument}={text!r} does not follow the OCI reference grammar.", hint=hint)
    registry, name = match["registry"], match["name"]
    if registry is not None and not ("." in registry or ":" in registry or registry == "localhost"):
        # docker's rule: a first part without '.' or ':' (and not localhost) is part of the name.
        name, registry = f"{registry}/{name}", None
        if registry is None and any(c.isupper() for c in name):
            raise ConfigurationError(f"{argument}={text!r}: image names are lower case.", hint=hint)
    if registry is None:
        registry = DEFAULT_REGISTRY
        name = name if "/" in name else f"library/{name}"
    if len(f"{registry}/{name}") > _NAME_MAX:
        raise ConfigurationError(f"{argument}={text!r}: the name is over {_NAME_MAX} characters.", hint=hint)
    if match["tag"] is None and match["digest"] is None:
        raise ConfigurationError(
            f"{argument}={text!r} has neither a tag nor a digest: it would name whatever image is 'latest' later.",
            hint=hint,
        )
    return ContainerReference(registry, name, match["tag"], match["digest"])


def is_registry_reference(asset: Mapping[str, Any]) -> bool:
    """Whether an asset's href is an image reference in a registry (remote, never a local file).

    True for assets of media type :data:`OCI_MEDIA_TYPE` whose href has no URL scheme and parses as a reference.
    """
    href = asset.get("href")
    if asset.get("type") != OCI_MEDIA_TYPE or not isinstance(href, str) or "://" in href:
        return False
    try:
        parse_container(href)
    except ConfigurationError:
        return False
    return True


__all__ = [
    "CONTAINER_KEY",
    "CONTAINER_ROLES",
    "OCI_MEDIA_TYPE",
    "ContainerReference",
    "is_registry_reference",
    "parse_container",
]
