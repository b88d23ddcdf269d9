"""The STAC Item of a prediction, written beside the output (``OUT.json`` for ``OUT.tif``).

It is valid under :func:`~mlm_export.validate_item`: ``processing:level`` ``L4`` and ``processing:software``
(mlm-export and the framework's version), ``derived_from`` links to the model Item and every data Item, and one
asset per output file with ``file:size``/``file:checksum``, ``bands`` and ``raster:bands`` (data type, nodata,
the map's ``spatial_resolution`` in metres when its CRS is projected in metres),
and ``classification:classes`` for class maps and class scores.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlm_export.hashing import hash_file

#: The versions mlm-export bundles (``stac/schemas_data``), so that a result Item validates offline.
EXTENSIONS = [
    "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
]
MEDIA_TYPES = {
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".tiff": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".parquet": "application/vnd.apache.parquet",
}


@dataclass
class OutputFile:
    """One written output: its asset key, the staged file, the name it is published under and its bands."""

    key: str
    staged: Path
    name: str
    bands: list[dict[str, Any]] = field(default_factory=list)
    classes: Sequence[Mapping[str, Any]] = ()
    roles: tuple[str, ...] = ("data",)


def _asset(output: OutputFile) -> dict[str, Any]:
    digest = hash_file(output.staged, progress=False)
    suffix = Path(output.name).suffix.lower()
    asset: dict[str, Any] = {
        "href": f"./{output.name}",
        "type": MEDIA_TYPES.get(suffix, "application/geo+json"),
        "roles": list(output.roles),
        "file:size": digest.size,
        "file:checksum": digest.checksum,
    }
    if output.bands:
        asset["bands"] = [{k: v for k, v in b.items() if k != "spatial_resolution"} for b in output.bands]
        asset["raster:bands"] = [
            {k: v for k, v in b.items() if k in ("data_type", "nodata", "spatial_resolution")} for b in output.bands
        ]  # fmt: skip
    if output.classes:
        asset["classification:classes"] = [
            {k: v for k, v in c.items() if k in ("value", "name", "description", "color_hint", "nodata")}
            for c in output.classes
        ]  # fmt: skip
    return asset


def framework_versions(model: Any) -> dict[str, str]:
    """``processing:software``: mlm-export and the framework that ran the model."""
    from mlm_export import __version__

    software = {"mlm-export": __version__}
    if hasattr(model, "get_inputs"):
        import onnxruntime

        software["onnxruntime"] = onnxruntime.__version__
    else:
        import torch

        software["torch"] = torch.__version__.split("+")[0]
    return software


def _href(source: str | os.PathLike[str]) -> str:
    text = str(source)
    return text if "://" in text else Path(text).resolve().as_uri()


def result_item(
    item_id: str,
    outputs: Sequence[OutputFile],
    *,
    geometry: Mapping[str, Any],
    bbox: Sequence[float],
    model_item: str | None,
    data_items: Sequence[str],
    software: Mapping[str, str],
    datetime: str | None,
) -> dict[str, Any]:
    """The result Item as a JSON dict (hrefs relative to the directory it is written to)."""
    sources = ([(model_item, "model Item")] if model_item else []) + [(d, "data Item") for d in data_items]
    links = [
        {"rel": "derived_from", "href": _href(h), "type": "application/geo+json", "title": title}
        for h, title in sources
    ]
    when = datetime or dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": list(EXTENSIONS),
        "id": item_id,
        "geometry": dict(geometry),
        "bbox": list(bbox),
        "properties": {
            "datetime": when,
            "processing:level": "L4",
            "processing:software": dict(software),
        },
        "links": links,
        "assets": {o.key: _asset(o) for o in outputs},
    }
