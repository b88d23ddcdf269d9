"""Band names of a model Item, walked in one place: band definitions, aliases, input bands, computed bands.

A band key ignores case and leading zeros of the number (``B4`` = ``B04``); a model band answers to its name, the
first word of its name (``"B04 - red"``) and its common name, as given by the Item's band definitions (STAC 1.1
``bands``, ``eo:bands``, ``raster:bands``, in properties or on assets) or by the one per-sensor table below
(:data:`SENSOR_BANDS`: Sentinel-2 and Landsat 8/9 band names and their eo common names), so ``blue green red nir``
finds a model of Sentinel-2 ``B02 B03 B04 B08`` and ``B04`` finds a model whose band is named ``red``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


#: The eo extension's common band names (eo v2.0.0 ``eo:common_name`` enum).
COMMON_NAMES = frozenset({"pan", "coastal", "blue", "green", "green05", "yellow", "red", "rededge", "rededge071",
                          "rededge075", "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "lwir",
                          "lwir11", "lwir12"})  # fmt: skip
#: Band names of each sensor (as the sensor's products spell them) -> eo common name (the eo extension's tables).
SENSOR_BANDS: dict[str, dict[str, str]] = {
    "Sentinel-2 MSI": {
        "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge071", "B06": "rededge075",
        "B07": "rededge078", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16",
        "B12": "swir22",
    },
    "Landsat 8/9 OLI-TIRS": {
        "B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08", "B6": "swir16", "B7": "swir22",
        "B8": "pan", "B9": "cirrus", "B10": "lwir11", "B11": "lwir12",
    },
}  # fmt: skip
_ZERO_PADDED = re.compile(r"^B0\d$", re.IGNORECASE)
_LEADING_ZEROS = re.compile(r"(?<=[A-Z])0+(?=\d)")


@functools.lru_cache(maxsize=4096)
def band_key(name: str) -> str:
    """Comparison key of a band name: case-insensitive, ``B04`` = ``B4``."""
    return _LEADING_ZEROS.sub("", name.strip().upper())


@functools.cache
def _keyed(sensor: str) -> dict[str, str]:
    """Band key -> common name of one sensor (computed once; never modified by callers)."""
    return {band_key(name): common for name, common in SENSOR_BANDS[sensor].items()}


@functools.cache
def _unanimous() -> dict[str, str]:
    """Band keys every sensor that has them names with the same common name (B1-B4: coastal, blue, green, red)."""
    found: dict[str, set[str]] = {}
    for sensor in SENSOR_BANDS:
        for key, common in _keyed(sensor).items():
            found.setdefault(key, set()).add(common)
    return {key: commons.pop() for key, commons in found.items() if len(commons) == 1}


def sensor_of(names: list[str]) -> str | None:
    """The sensor of a band set, None when no name is a sensor band or the set fits several sensors alike.

    The sensor is the one whose table holds every sensor-looking name, else the one that spells them so (``B04``:
    only Sentinel-2 pads numbers with a zero).
    """
    keys = {band_key(n) for n in names if n.strip().lower() not in COMMON_NAMES}
    if not keys:
        return None
    fitting = [sensor for sensor in SENSOR_BANDS if keys <= set(_keyed(sensor))]
    if len(fitting) == 1:
        return fitting[0]
    if fitting and any(_ZERO_PADDED.match(n.strip()) or n.strip().upper() == "B8A" for n in names):
        return "Sentinel-2 MSI" if "Sentinel-2 MSI" in fitting else None
    return None


def common_names(names: list[str]) -> dict[str, str]:
    """Band name -> eo common name, where the sensor table (or the name itself) says so without doubt.

    The sensor comes from the whole band set (:func:`sensor_of`); when it is unknown only the names every sensor
    agrees on are given (``B2`` is blue for both, ``B8`` is not), and a band named ``red`` is ``red``.
    """
    sensor = sensor_of(names)
    table = _keyed(sensor) if sensor is not None else _unanimous()
    result: dict[str, str] = {}
    for name in names:
        common = table.get(band_key(name))
        if common is None and name.strip().lower() in COMMON_NAMES:
            common = name.strip().lower()
        if common is not None:
            result[name] = common
    return result


def sensor_aliases(names: list[str]) -> dict[str, set[str]]:
    """Band keys each band of ``names`` answers to through the sensor table.

    Its name and its common name; for a band named by a common name, also the band every sensor gives that name
    (``red`` -> ``B4``).
    """
    aliases: dict[str, set[str]] = {}
    by_common: dict[str, set[str]] = {}
    for key, common in _unanimous().items():
        by_common.setdefault(common, set()).add(key)
    for name, common in common_names(names).items():
        keys = {band_key(name), band_key(common)}
        if name.strip().lower() == common:
            keys |= by_common.get(common, set())
        aliases.setdefault(band_key(name), set()).update(keys)
    return aliases


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
    names = [b["name"] for b in band_definitions(document) if isinstance(b.get("name"), str) and b["name"].strip()]
    for key, keys in sensor_aliases(names + input_band_names(document)).items():
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


def required_bands(document: Mapping[str, Any], aliases: dict[str, set[str]] | None = None) -> list[str]:
    """Bands the model reads: listed input bands, with a computed band replaced by the bands its expression uses.

    ``aliases``: the document's :func:`definition_aliases`, when the caller has them already.
    """
    aliases = definition_aliases(document) if aliases is None else aliases
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
