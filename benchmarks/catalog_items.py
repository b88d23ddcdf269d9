"""Generated model catalogs for the scale benchmarks: realistic, valid MLM Items, deterministic for a seed.

Every Item is a variant of one official example (``item_eo_bands.json`` from ``../shared/mlm-examples``): a random
footprint (1–20 degrees, anywhere but the poles) and time range, one of 4 tasks, PyTorch or ONNX, one of 6 band sets
with the channel count to match. Besides them, :data:`RARE` Items (whatever the catalog size) share a rare band set,
a rare framework and a rare channel count, so a query for any of them has the same hits at every size.

Use :func:`generate_items` (a generator: nothing is kept) or :func:`write_folder` (one ``<id>.json`` per Item in a
folder, ids ``model-0000000``...). Run ``python benchmarks/catalog_items.py DIR --count 10000`` to write a folder.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "shared" / "mlm-examples" / "item_eo_bands.json"

#: The 6 band sets of the ordinary Items.
BAND_SETS: dict[str, list[str]] = {
    "sentinel-2-l1c": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"],
    "sentinel-2-l2a": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"],
    "rgb": ["B04", "B03", "B02"],
    "rgbn": ["B02", "B03", "B04", "B08"],
    "landsat-8": ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"],
    "sentinel-1": ["vv", "vh"],
}
TASKS = ["classification", "semantic-segmentation", "object-detection", "regression"]
FRAMEWORKS = ["pytorch", "onnx"]

#: How many rare Items every catalog holds, and what makes them rare.
RARE = 20
RARE_BANDS = ["hh", "hv", "hh_coherence", "hv_coherence", "incidence_angle"]
RARE_FRAMEWORK = "tensorflow"
RARE_CHANNELS = len(RARE_BANDS)


def _template() -> dict[str, Any]:
    item = json.loads(EXAMPLE.read_text())
    item.pop("$comment", None)
    item.pop("collection", None)
    item["links"] = []
    return item


def _footprint(rng: random.Random) -> tuple[list[float], dict[str, Any]]:
    size = rng.uniform(1, 20)
    west, south = rng.uniform(-180, 180 - size), rng.uniform(-70, 70 - size)
    east, north = west + size, south + size
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return [west, south, east, north], {"type": "Polygon", "coordinates": [ring]}


def _time_range(rng: random.Random) -> tuple[str, str]:
    start = dt.datetime(2015, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=rng.randrange(0, 3000))
    end = start + dt.timedelta(days=rng.randrange(30, 1500))
    return start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ")


def _variant(template: dict[str, Any], index: int, rng: random.Random, rare: bool) -> dict[str, Any]:
    item = copy.deepcopy(template)
    item["id"] = f"model-{index:07d}"
    item["bbox"], item["geometry"] = _footprint(rng)
    properties = item["properties"]
    properties["start_datetime"], properties["end_datetime"] = _time_range(rng)
    properties["mlm:name"] = f"model {index}"
    properties["mlm:tasks"] = [rng.choice(TASKS)]
    properties["mlm:framework"] = RARE_FRAMEWORK if rare else rng.choice(FRAMEWORKS)
    properties["mlm:total_parameters"] = rng.randrange(10_000, 500_000_000)
    bands = RARE_BANDS if rare else BAND_SETS[rng.choice(sorted(BAND_SETS))]
    model_input = properties["mlm:input"][0]
    model_input["name"] = f"{len(bands)} band batch"
    model_input["bands"] = list(bands)
    model_input["input"]["shape"] = [-1, len(bands), 64, 64]
    model_input["value_scaling"] = [{"type": "z-score", "mean": 1000.0 + b, "stddev": 500.0} for b in range(len(bands))]
    defined = item["assets"]["weights"]["eo:bands"]  # the model asset defines every band the input names
    known = {b.get("name") for b in defined} | {b.get("common_name") for b in defined}
    defined += [{"name": band} for band in bands if band not in known]
    return item


def rare_positions(count: int, seed: int = 0) -> list[int]:
    """The indexes of the :data:`RARE` rare Items in a catalog of ``count`` Items (spread through it)."""
    rng = random.Random(f"rare-{seed}")
    return sorted(rng.sample(range(count), min(RARE, count)))


def generate_items(count: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` valid model Items, one at a time; the same ``count`` and ``seed`` give the same Items."""
    template = _template()
    rng = random.Random(seed)
    rare = set(rare_positions(count, seed))
    for index in range(count):
        yield _variant(template, index, rng, index in rare)


def write_folder(folder: Path, count: int, seed: int = 0) -> Path:
    """Write ``count`` Items as ``folder/<id>.json``; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for item in generate_items(count, seed):
        (folder / f"{item['id']}.json").write_text(json.dumps(item))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    write_folder(arguments.folder, arguments.count, arguments.seed)
    print(f"{arguments.count} Items in {arguments.folder}")


if __name__ == "__main__":
    main()
