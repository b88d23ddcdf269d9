"""Per-tile outputs as GeoParquet (pyarrow + geopandas): the GeoJSON run's features, with GeoParquet metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scenes import TileClassifier, export_classifier, scene  # noqa: F401 - scene is a fixture

from mlm_export import predict, validate_item
from mlm_export.prediction.outputs import write_features

pq = pytest.importorskip("pyarrow.parquet", reason="GeoParquet needs pyarrow (the predict extra)")


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def _rows(path: Path) -> tuple[list[dict], dict]:
    """The Parquet file's rows (geometry as shapely) and its ``geo`` metadata, read with pyarrow itself."""
    from shapely import wkb

    table = pq.read_table(path)
    geo = json.loads(table.schema.metadata[b"geo"])
    rows = table.to_pylist()
    for row in rows:
        row["geometry"] = wkb.loads(row["geometry"])
    return rows, geo


def test_classifier_tiles_as_geoparquet_equal_the_geojson_features(tmp_path: Path, scene: dict) -> None:
    from shapely.geometry import shape

    item = export_classifier(tmp_path / "model")
    predict(item, scene["files"], tmp_path / "tiles.geojson", model_class=TileClassifier)
    result = predict(item, scene["files"], tmp_path / "pq" / "tiles.parquet", model_class=TileClassifier)
    features = json.loads((tmp_path / "tiles.geojson").read_text())["features"]
    rows, geo = _rows(tmp_path / "pq" / "tiles.parquet")
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["geometry_types"] == ["Polygon"]
    assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 4326}
    assert len(rows) == len(features) == 11
    for row, feature in zip(rows, features, strict=True):
        assert {k: row[k] for k in feature["properties"]} == feature["properties"]
        assert row["geometry"].equals_exact(shape(feature["geometry"]), 1e-12)
    doc = json.loads(result.item.read_text())
    assert doc["assets"]["data"]["type"] == "application/vnd.apache.parquet"
    assert doc["assets"]["data"]["file:size"] == (tmp_path / "pq" / "tiles.parquet").stat().st_size
    assert validate_item(result.item).valid


def test_embeddings_are_a_list_column(tmp_path: Path) -> None:
    polygon = {"type": "Polygon", "coordinates": [[[9.0, 46.0], [9.1, 46.0], [9.1, 46.1], [9.0, 46.0]]]}
    vectors = np.random.default_rng(0).normal(size=(2, 5))
    features = [{"type": "Feature", "geometry": polygon, "properties": {"row": i, "col": 0,
                                                                        "embedding": [float(v) for v in vector]}}
                for i, vector in enumerate(vectors)]  # fmt: skip
    write_features(tmp_path / "e.parquet", features, parquet=True)
    table = pq.read_table(tmp_path / "e.parquet")
    assert str(table.schema.field("embedding").type) == "list<element: double>"
    np.testing.assert_array_equal(np.array(table.column("embedding").to_pylist()), vectors)
