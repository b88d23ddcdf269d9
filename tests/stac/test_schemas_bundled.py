"""The schemas shipped as package data: exactly the ``$ref`` closure of what mlm-export writes, byte-exact, used
by default before the cache (issue 23, point 11)."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from schema_bundle import BUNDLE, ROOTS, closure

from mlm_export.errors import SchemaNotFoundError
from mlm_export.provenance.revisions import VERSION_SCHEMA_URI
from mlm_export.provenance.software import PROCESSING_SCHEMA_URI
from mlm_export.stac import builder
from mlm_export.stac.schemas import BUNDLED_DIR, SchemaStore
from mlm_export.stac.validate import validate_item

SHARED_MLM_EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "mlm-examples"


def test_the_bundle_is_the_closure_of_what_the_package_writes() -> None:
    assert BUNDLED_DIR == BUNDLE
    written = {builder.MLM_SCHEMA_URI, builder.FILE_SCHEMA_URI, builder.CLASSIFICATION_SCHEMA_URI,
               builder.ML_AOI_SCHEMA_URI, builder.EO_SCHEMA_URI, VERSION_SCHEMA_URI, PROCESSING_SCHEMA_URI}  # fmt: skip
    assert written <= set(ROOTS)
    reachable = closure(BUNDLE)  # a KeyError here: a $ref leads out of the bundle
    files = {p.relative_to(BUNDLE).as_posix() for p in BUNDLE.rglob("*") if p.is_file()}
    assert files == set(reachable.values()) | {"INDEX.json", "PROVENANCE.json", "NOTICE"}
    assert sum((BUNDLE / p).stat().st_size for p in files) < 400_000
    assert "Apache License 2.0" in (BUNDLE / "NOTICE").read_text(encoding="utf-8")


def test_the_bundled_files_are_the_published_bytes(schema_dir: Path) -> None:
    provenance = json.loads((BUNDLE / "PROVENANCE.json").read_bytes())
    for url, relative in closure(BUNDLE).items():
        data = (BUNDLE / relative).read_bytes()
        assert data == (schema_dir / relative).read_bytes(), relative
        assert hashlib.sha256(data).hexdigest() == provenance[url]["sha256"], url
    assert closure(schema_dir) == closure(BUNDLE)  # the same closure computed over the full store


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    monkeypatch.delenv("MLM_EXPORT_SCHEMA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fetched: list[str] = []

    def record(url: str, timeout: float) -> Any:
        fetched.append(url)
        raise OSError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", record)
    return fetched


def test_official_examples_validate_from_the_bundle_alone(
    tmp_path: Path, schema_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle answers as the full store does on every official example, with nothing downloaded."""
    examples = sorted(SHARED_MLM_EXAMPLES.glob("item_*.json"))
    if not examples:
        pytest.skip("../shared/mlm-examples is not here")
    expected = [validate_item(path, schema_dir=schema_dir) for path in examples]
    fetched = _offline(monkeypatch, tmp_path)
    for path, full in zip(examples, expected, strict=True):
        report = validate_item(path)
        assert (report.valid, report.schemas, report.problems) == (full.valid, full.schemas, full.problems)
        declared = json.loads(path.read_bytes())["stac_extensions"]
        assert set(report.schemas) - {report.schemas[0]} == set(declared), path.name  # every schema was checked
    assert fetched == []
    assert not (tmp_path / "cache").exists()


def test_a_schema_not_bundled_comes_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched = _offline(monkeypatch, tmp_path)
    url = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
    store = SchemaStore()
    assert store.load(builder.MLM_SCHEMA_URI)["$id"].startswith(builder.MLM_SCHEMA_URI)
    cached = tmp_path / "cache" / "mlm-export" / "schemas" / "stac-extensions.github.io/datacube/v2.2.0/schema.json"
    cached.parent.mkdir(parents=True)
    cached.write_text('{"title": "from the cache"}', encoding="utf-8")
    assert store.load(url) == {"title": "from the cache"}
    with pytest.raises(SchemaNotFoundError, match="neither bundled .* nor in the cache"):
        store.load("https://stac-extensions.github.io/raster/v2.0.0/schema.json")
    assert fetched == ["https://stac-extensions.github.io/raster/v2.0.0/schema.json"]


def test_a_given_directory_is_the_only_place_searched(tmp_path: Path) -> None:
    empty = tmp_path / "store"
    empty.mkdir()
    store = SchemaStore(empty)
    assert store.bundled is None
    with pytest.raises(SchemaNotFoundError, match="is not in"):
        store.load(builder.MLM_SCHEMA_URI)
