"""Band names of a model Item, walked in one place: band definitions, aliases, input bands, computed bands.

A band key ignores case and leading zeros of the number (``B4`` = ``B04``); a model band answers to its name, the
first word of its name (``"B04 - red"``) and its common name, as given by the Item's band definitions (STAC 1.1
``bands``, ``eo:bands``, ``raster:bands``, in properties or on assets).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def band_key(name: str) -> str:
    """Comparison key of a band name: case-insensitive, ``B04`` = ``B4``."""
    return re.sub(r"(?<=[A-Z])0+(?=\d)", "", name.strip().upper())


def band_definitions(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every band definition of the Item: STAC 1.1 ``bands``, ``eo:bands``, ``raster:bands`` (properties, assets)."""
    props = document.get("properties") or {}
    sources = [props.get("bands"), props.get("eo:bands")]
    for asset in (document.get("assets") or {}).values():
        if isinstance(asset, Mapping):
            sources += [asset.get("bands"), asset.get("eo:bands"), asset.get("raster:bands")]
    return [b for source in sources if isinstance(source, list) for b in source if isinstance(b, Mapping)]


def definition_aliases(document: Mapping[str, Any]) -> dict[str, set[str]]:
    """Band keys a model band answers to: its name, the first word of it ('B04 - red'), its common name."""
    aliases: dict[str, set[str]] = {}
    for band in band_definitions(document):
        names = [band.get(k) for k in ("name", "common_name", "eo:common_name")]
        keys = {band_key(n) for n in names if isinstance(n, str) and n.strip()}
        keys |= {band_key(n.split()[0]) for n in names if isinstance(n, str) and n.strip()}
        for key in keys:
            aliases.setdefault(key, set()).update(keys)
    return aliases


def input_band_names(document: Mapping[str, Any]) -> list[str]:
    """Names of every band listed in the model's inputs, computed (expression) bands included."""
    names: list[str] = []
    for entry in (document.get("properties") or {}).get("mlm:input") or []:
        for band in (entry.get("bands") if isinstance(entry, Mapping) else None) or []:
            name = band if isinstance(band, str) else band.get("name") if isinstance(band, Mapping) else None
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return names


def required_bands(document: Mapping[str, Any]) -> list[str]:
    """Bands the model reads: listed input bands, with a computed band replaced by the bands its expression uses."""
    aliases = definition_aliases(document)
    listed = {band_key(n) for n in input_band_names(document)}
    known = set(aliases) | listed
    required: list[str] = []
    for entry in (document.get("properties") or {}).get("mlm:input") or []:
        for band in (entry.get("bands") if isinstance(entry, Mapping) else None) or []:
            if isinstance(band, Mapping) and "expression" in band:
                expression = band.get("expression")
                text = expression if isinstance(expression, str) else json.dumps(expression)
                names = [n for n in _IDENTIFIER.findall(text) if band_key(n) in known]
            else:
                name = band if isinstance(band, str) else band.get("name") if isinstance(band, Mapping) else None
                names = [name] if isinstance(name, str) and name else []
            required += [n for n in names if n not in required]
    return required
