"""The schemas mlm-export ships (``mlm_export/stac/schemas_data``): roots and the ``$ref`` closure over a store.

``python tests/stac/schema_bundle.py ../shared/schemas`` rewrites the bundle from a store laid out like
``shared/schemas`` (byte-exact copies, INDEX.json and PROVENANCE.json restricted to the copied files);
``tests/stac/test_schemas_bundled.py`` checks the bundle is exactly that closure.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BUNDLE = Path(__file__).resolve().parents[2] / "mlm_export" / "stac" / "schemas_data"
_STAC = "https://schemas.stacspec.org/v{}/{}-spec/json-schema/{}.json"
_EXT = "https://stac-extensions.github.io/{}/schema.json"
#: What the package writes (STAC 1.1 Items, Collections, Catalogs and every extension it declares) and what the
#: official MLM examples declare (STAC 1.0.0, eo v1.1.0, raster, datacube, item-assets, file v1.0.0).
ROOTS = (
    *(_STAC.format(v, kind, kind) for v in ("1.1.0", "1.0.0") for kind in ("item", "collection", "catalog")),
    *(_EXT.format(name) for name in ("mlm/v1.5.2", "file/v2.1.0", "classification/v1.1.0", "ml-aoi/v0.2.0",
                                     "processing/v1.1.0", "version/v1.2.0", "scientific/v1.0.0", "eo/v2.0.0",
                                     "eo/v1.1.0", "raster/v1.1.0", "datacube/v2.3.0", "item-assets/v1.0.0",
                                     "file/v1.0.0")),
)  # fmt: skip


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def closure(store: Path, roots: tuple[str, ...] = ROOTS) -> dict[str, str]:
    """URL -> relative path of every schema reachable by ``$ref`` from ``roots`` in ``store`` (KeyError: missing).

    Meta-schemas (json-schema.org) are left out: they come from jsonschema's bundled copies.
    """
    index = json.loads((store / "INDEX.json").read_bytes())
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        url = todo.pop().split("#", 1)[0]
        if url in found or "json-schema.org/" in url:
            continue
        found[url] = index[url]
        document = json.loads((store / found[url]).read_bytes())
        todo += [urllib.parse.urljoin(url, ref) for ref in _refs(document) if not ref.startswith("#")]
    return found


def write_bundle(source: Path, target: Path = BUNDLE) -> dict[str, str]:
    """Copy the closure of ``ROOTS`` from ``source`` into ``target`` with its INDEX.json and PROVENANCE.json."""
    files = closure(source)
    index = json.loads((source / "INDEX.json").read_bytes())
    kept = {url: path for url, path in index.items() if path in set(files.values())}  # aliases of copied files too
    for relative in sorted(set(files.values())):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target / relative)
    provenance = json.loads((source / "PROVENANCE.json").read_bytes())
    (target / "INDEX.json").write_text(json.dumps(dict(sorted(kept.items())), indent=2) + "\n")
    kept_provenance = {url: provenance[url] for url in sorted(files) if url in provenance}
    (target / "PROVENANCE.json").write_text(json.dumps(kept_provenance, indent=2) + "\n")
    return files


if __name__ == "__main__":
    written = write_bundle(Path(sys.argv[1]))
    print(f"{len(written)} schemas, {sum((BUNDLE / p).stat().st_size for p in written.values())} bytes")
