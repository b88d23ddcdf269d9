"""Catalog building and model search: files validate, extents and rankings match values computed here."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import pystac
import pytest
from conftest import EXAMPLES_DIR
from factories import item_dict

from mlm_export.description import Band, InputSpec, OutputSpec
from mlm_export.errors import ConfigurationError, ItemValidationError, OutputExistsError
from mlm_export.stac.builder import MLM_SCHEMA_URI
from mlm_export.stac.collection import build_catalog
from mlm_export.stac.search import SearchHit, format_hits, search_catalog
from mlm_export.stac.validate import validate_item

S2 = ["B02", "B03", "B04", "B08"]
ALPS = (5.0, 45.0, 10.0, 48.0)
EUROPE = (-10.0, 35.0, 30.0, 60.0)
GLOBE = (-180.0, -90.0, 180.0, 90.0)
AMAZON = (-75.0, -15.0, -45.0, 5.0)
TILE = [6.0, 46.0, 7.0, 47.0]  # inside the Alps box: one square degree
DATACUBE = EXAMPLES_DIR / "item_datacube_variables.json"
# One file per distinct id: the eo/raster band examples reuse the id of item_bands_expression.json.
EXAMPLES = [
    EXAMPLES_DIR / name
    for name in (
        "item_basic.json",
        "item_bands_expression.json",
        "item_datacube_variables.json",
        "item_multi_io.json",
        "item_pytorch_geo_unet.json",
    )
]
ALL_BANDS_ID = "resnet-18-all-bands"  # item_eo_bands.json (13 bands) under an id of its own


def all_bands_example() -> dict[str, Any]:
    """item_eo_bands.json as a model of its own: another id, and not in the examples' collection (its
    ``./collection.json`` link would dangle wherever the copy is written)."""
    document = dict(json.loads((EXAMPLES_DIR / "item_eo_bands.json").read_text()), id=ALL_BANDS_ID)
    document.pop("collection")
    document["links"] = [link for link in document["links"] if link["rel"] != "collection"]
    return document


def model(
    directory: Path,
    name: str,
    *,
    bbox: tuple[float, ...],
    bands: tuple[str, ...] = tuple(S2),
    tasks: tuple[str, ...] = ("classification",),
    framework: str = "PyTorch",
    start: str | None = None,
    end: str | None = None,
    instant: str | None = None,
) -> dict[str, Any]:
    """A valid model item (factories.py) with its own footprint, time range, bands, tasks and framework."""
    dims = ("batch", "bands" if bands else "channel", "height", "width")
    image = InputSpec("image", (-1, len(bands) or -1, 32, 32), dims, "float32", bands=bands)
    output = OutputSpec("out", (-1, 3), ("batch", "class"), "float32", tasks=tasks)
    return item_dict(
        directory,
        name=name,
        bbox=bbox,
        tasks=tasks,
        framework=framework,
        inputs=(image,),
        outputs=(output,),
        band_definitions=tuple(Band(b) for b in bands),
        start_datetime=start,
        end_datetime=end,
        datetime=instant,
    )


#: name -> (bbox, bands, tasks, framework, start, end, instant)
SPECS: dict[str, tuple[Any, ...]] = {
    "alps": (ALPS, tuple(S2), ("classification",), "PyTorch", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z", None),
    "alps-rgb": (ALPS, ("B02", "B03", "B04"), ("classification",), "PyTorch", "2019-01-01T00:00:00Z",
                 "2023-01-01T00:00:00Z", None),
    "alps-swir": (ALPS, (*S2, "B11"), ("regression",), "PyTorch", "2020-03-01T00:00:00Z", "2020-09-01T00:00:00Z",
                  None),
    "alps-any": (ALPS, (), ("object-detection",), "ONNX", "2010-01-01T00:00:00Z", "2030-01-01T00:00:00Z", None),
    "europe": (EUROPE, tuple(S2), ("semantic-segmentation",), "TensorFlow", "2018-01-01T00:00:00Z",
               "2024-01-01T00:00:00Z", None),
    "globe-rgb": (GLOBE, ("B02", "B03", "B04"), ("classification",), "JAX", None, None, "2022-06-01T00:00:00Z"),
    "amazon": (AMAZON, tuple(S2), ("scene-classification",), "PyTorch", "2015-01-01T00:00:00Z",
               "2016-01-01T00:00:00Z", None),
}  # fmt: skip


def factory_items(directory: Path) -> list[dict[str, Any]]:
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    for name, (bbox, bands, tasks, framework, start, end, instant) in SPECS.items():
        items.append(
            model(directory, name, bbox=bbox, bands=bands, tasks=tasks, framework=framework, start=start, end=end,
                  instant=instant)
        )  # fmt: skip
    return items


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, schema_dir: Path) -> tuple[Path, pystac.Collection]:
    """A catalog of the factory models and the official examples (built once for the read-only tests)."""
    root = tmp_path_factory.mktemp("catalog")
    items: list[Any] = [*factory_items(root / "models"), *EXAMPLES, all_bands_example()]
    with pytest.warns(UserWarning, match="0..360 longitudes"):
        collection = build_catalog(items, root / "cat", title="Test models", schema_dir=schema_dir)
    return root, collection


def ids(hits: list[SearchHit]) -> list[str]:
    return [h.id for h in hits]


def written_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------------------- build
def test_layout_and_every_file_validates(built: tuple[Path, pystac.Collection], schema_dir: Path) -> None:
    root, collection = built
    cat = root / "cat"
    expected_ids = [*SPECS, *(json.loads(p.read_text())["id"] for p in EXAMPLES), ALL_BANDS_ID]
    expected = {cat / "collection.json", *(cat / i / f"{i}.json" for i in expected_ids)}
    artifacts = {cat / name / "weights.safetensors" for name in SPECS}  # each factory item's file, placed
    assert set(written_files(cat)) == expected | artifacts | {cat / ".mlm-index.sqlite"}  # and the search index
    for path in expected:
        report = validate_item(path, schema_dir, check_files=True)  # self-contained: no allow_outside needed
        assert report.valid, (path, [str(p) for p in report.problems])
    assert Path(collection.get_self_href()) == (cat / "collection.json").resolve()
    assert collection.catalog_type == pystac.CatalogType.SELF_CONTAINED
    assert sorted(i.id for i in collection.get_items()) == sorted(expected_ids)


def test_links_are_relative_and_structural(built: tuple[Path, pystac.Collection]) -> None:
    cat = built[0] / "cat"
    collection = json.loads((cat / "collection.json").read_text())
    assert not any(link["rel"] == "self" for link in collection["links"])
    items = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert sorted(items) == sorted(f"./{i}/{i}.json" for i in (p.parent.name for p in cat.glob("*/*.json")))
    for path in cat.glob("*/*.json"):
        document = json.loads(path.read_text())
        assert document["collection"] == "mlm-models"
        rels = {link["rel"]: link["href"] for link in document["links"]}
        assert rels["root"] == rels["parent"] == rels["collection"] == "../collection.json"
        assert "self" not in rels


def test_no_absolute_local_path_in_any_file(built: tuple[Path, pystac.Collection]) -> None:
    root = built[0]
    needles = {str(root), os.path.realpath(root), "file://"}
    for path in written_files(root / "cat"):
        if path.suffix != ".json":
            continue  # the placed artifacts
        text = path.read_text()
        assert not any(n in text for n in needles), path


def test_local_asset_hrefs_point_at_the_files(built: tuple[Path, pystac.Collection]) -> None:
    root = built[0]
    for name in SPECS:
        document = json.loads((root / "cat" / name / f"{name}.json").read_text())
        href = document["assets"]["model"]["href"]
        assert href == "./weights.safetensors"
        placed = root / "cat" / name / "weights.safetensors"
        assert os.path.samefile(placed, root / "models" / "weights.safetensors")  # same filesystem: a hard link


def test_urls_are_kept(built: tuple[Path, pystac.Collection]) -> None:
    source = json.loads((EXAMPLES_DIR / "item_multi_io.json").read_text())
    written = json.loads((built[0] / "cat" / source["id"] / f"{source['id']}.json").read_text())
    assert {k: a["href"] for k, a in written["assets"].items()} == {k: a["href"] for k, a in source["assets"].items()}
    derived = [link["href"] for link in written["links"] if link["rel"] == "derived_from"]
    assert derived == [link["href"] for link in source["links"] if link["rel"] == "derived_from"]


def test_extent_is_the_union_of_the_items(tmp_path: Path, schema_dir: Path) -> None:
    items = factory_items(tmp_path / "models")
    collection = build_catalog(items, tmp_path / "cat", schema_dir=schema_dir)
    boxes = [spec[0] for spec in SPECS.values()]
    expected = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    document = json.loads((tmp_path / "cat" / "collection.json").read_text())
    assert document["extent"]["spatial"]["bbox"] == [expected]
    starts = [spec[4] or spec[6] for spec in SPECS.values()]
    ends = [spec[5] or spec[6] for spec in SPECS.values()]
    assert document["extent"]["temporal"]["interval"] == [[min(starts), max(ends)]]  # same format: text order works
    assert collection.extent.spatial.bboxes == [expected]


def test_extent_with_examples_reads_the_0_360_bbox(tmp_path: Path, schema_dir: Path) -> None:
    items: list[Any] = [i for i in factory_items(tmp_path / "models") if i["id"] != "globe-rgb"]
    boxes = [spec[0] for name, spec in SPECS.items() if name != "globe-rgb"]
    for path in EXAMPLES:
        west, south, east, north = json.loads(path.read_text())["bbox"]
        south, north = min(south, north), max(south, north)
        west, east = (west - 360 if west > 180 else west), (east - 360 if east > 180 else east)
        boxes.append((west, south, east, north))
    with pytest.warns(UserWarning, match="item_datacube_variables.json"):
        build_catalog([*items, *EXAMPLES], tmp_path / "cat", schema_dir=schema_dir)
    expected = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    assert expected[0] == pytest.approx(-126.4)  # the ERA5 model: 233.6 - 360
    document = json.loads((tmp_path / "cat" / "collection.json").read_text())
    assert document["extent"]["spatial"]["bbox"] == [pytest.approx(expected)]
    assert document["extent"]["temporal"]["interval"] == [["1900-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]]
    era5 = search_catalog(tmp_path / "cat", bbox=[-100, 30, -90, 40])  # Texas
    assert ids(era5) == ["UNet_ClimateDiffuse_ERA5_Downscaling"]


def test_summaries_are_objects_that_pass_mlm(built: tuple[Path, pystac.Collection], schema_dir: Path) -> None:
    document = json.loads((built[0] / "cat" / "collection.json").read_text())
    assert MLM_SCHEMA_URI in document["stac_extensions"]
    summaries = document["summaries"]
    assert all(isinstance(v, dict) for v in summaries.values())
    example_docs = [json.loads(p.read_text()) for p in EXAMPLES] + [all_bands_example()]
    tasks = {t for spec in SPECS.values() for t in spec[2]} | {
        t for d in example_docs for t in d["properties"]["mlm:tasks"]
    }
    assert set(summaries["mlm:tasks"]["items"]["enum"]) == tasks
    frameworks = {spec[3] for spec in SPECS.values()} | {
        d["properties"]["mlm:framework"] for d in example_docs if "mlm:framework" in d["properties"]
    }
    assert set(summaries["mlm:framework"]["enum"]) == frameworks
    assert set(summaries["mlm:accelerator"]["enum"]) == {"amd64", "cuda", None}  # item_basic has none
    assert {"B02", "B03", "B04", "B08", "B11", "B4", "NDVI"} <= set(
        summaries["bands"]["items"]["properties"]["name"]["enum"]
    )
    assert summaries["mlm:total_parameters"]["minimum"] <= 11_000_000 <= summaries["mlm:total_parameters"]["maximum"]
    # The reason for this form: plain arrays fail MLM v1.5.2 on a Collection.
    arrays = dict(document, summaries={"mlm:tasks": sorted(tasks)})
    assert not validate_item(arrays, schema_dir).valid


def test_items_from_files_with_relative_hrefs_are_rewritten(tmp_path: Path, schema_dir: Path) -> None:
    source = tmp_path / "src" / "deep"
    source.mkdir(parents=True)
    document = model(source, "relative", bbox=ALPS, start="2020-01-01T00:00:00Z", end="2021-01-01T00:00:00Z")
    document["assets"]["model"]["href"] = "weights.safetensors"  # next to the item file
    (source / "item.json").write_text(json.dumps(document))
    build_catalog([source / "item.json"], tmp_path / "out" / "cat", schema_dir=schema_dir)
    written = tmp_path / "out" / "cat" / "relative" / "relative.json"
    href = json.loads(written.read_text())["assets"]["model"]["href"]
    assert href == "./weights.safetensors"
    assert validate_item(written, schema_dir, check_files=True).valid

    # A pystac.Item read from that catalog (relative hrefs + self href) can be catalogued again elsewhere.
    item = pystac.Item.from_file(str(written))
    build_catalog([item], tmp_path / "again", collection_id="again", schema_dir=schema_dir)
    again = tmp_path / "again" / "relative" / "relative.json"
    assert json.loads(again.read_text())["assets"]["model"]["href"] == "./weights.safetensors"
    assert validate_item(again, schema_dir, check_files=True).valid
    assert (again.parent / "weights.safetensors").read_bytes() == (source / "weights.safetensors").read_bytes()


def test_overwrite_is_refused_then_allowed(tmp_path: Path, schema_dir: Path) -> None:
    items = factory_items(tmp_path / "models")[:2]
    build_catalog(items, tmp_path / "cat", title="first", schema_dir=schema_dir)
    before = {p: p.read_bytes() for p in written_files(tmp_path / "cat")}
    with pytest.raises(OutputExistsError, match="collection.json"):
        build_catalog(items, tmp_path / "cat", title="second", schema_dir=schema_dir)
    assert {p: p.read_bytes() for p in written_files(tmp_path / "cat")} == before
    collection = build_catalog(items, tmp_path / "cat", title="second", overwrite=True, schema_dir=schema_dir)
    assert collection.title == "second"
    assert set(written_files(tmp_path / "cat")) == set(before)  # no temporary directory left behind


def test_existing_item_file_is_not_overwritten(tmp_path: Path, schema_dir: Path) -> None:
    items = factory_items(tmp_path / "models")[:1]
    (tmp_path / "cat" / "alps").mkdir(parents=True)
    (tmp_path / "cat" / "alps" / "alps.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="alps.json"):
        build_catalog(items, tmp_path / "cat", schema_dir=schema_dir)
    assert not (tmp_path / "cat" / "collection.json").exists()


def test_invalid_item_writes_nothing(tmp_path: Path, schema_dir: Path) -> None:
    bad = factory_items(tmp_path / "models")[0]
    bad["properties"]["mlm:accelerator"] = "cpu"
    with pytest.raises(ItemValidationError, match="mlm:accelerator"):
        build_catalog([bad], tmp_path / "cat", schema_dir=schema_dir)
    assert not (tmp_path / "cat").exists() or not any((tmp_path / "cat").iterdir())


# ---------------------------------------------------------------------------------------------------- bad input
def test_not_an_item_file(tmp_path: Path) -> None:
    collection = EXAMPLES_DIR / "collection.json"
    with pytest.raises(ConfigurationError, match="collection.json.*not a STAC Item"):
        build_catalog([collection], tmp_path / "cat")
    text = tmp_path / "notes.json"
    text.write_text("not json")
    with pytest.raises(ConfigurationError, match="notes.json.*not JSON"):
        build_catalog([text], tmp_path / "cat")
    with pytest.raises(ConfigurationError, match="missing.json.*does not exist"):
        build_catalog([tmp_path / "missing.json"], tmp_path / "cat")
    plain = dict(json.loads((EXAMPLES_DIR / "item_basic.json").read_text()), stac_extensions=[])
    with pytest.raises(ConfigurationError, match="does not declare the MLM extension"):
        build_catalog([plain], tmp_path / "cat")
    assert not (tmp_path / "cat").exists()


def test_duplicate_ids_and_unresolvable_hrefs(tmp_path: Path) -> None:
    first, second = EXAMPLES_DIR / "item_eo_bands.json", EXAMPLES_DIR / "item_raster_bands.json"
    with pytest.raises(ConfigurationError, match="item_eo_bands.json.*item_raster_bands.json.*same id"):
        build_catalog([first, second], tmp_path / "cat")
    loose = factory_items(tmp_path / "models")[0]
    loose["assets"]["model"]["href"] = "weights.safetensors"
    with pytest.raises(ConfigurationError, match="relative href 'weights.safetensors'"):
        build_catalog([loose], tmp_path / "cat")
    with pytest.raises(ConfigurationError, match="no items"):
        build_catalog([], tmp_path / "cat")
    secret = factory_items(tmp_path / "models")[0]
    secret["assets"]["model"]["href"] = "https://user:password@example.com/model.pt"
    with pytest.raises(ConfigurationError, match="credentials"):
        build_catalog([secret], tmp_path / "cat", validate=False)
    assert not (tmp_path / "cat").exists()


def test_search_needs_a_catalog_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"{tmp_path}.*holds no model Item"):
        search_catalog(tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        search_catalog(tmp_path / "nowhere")
    item_file = tmp_path / "item.json"
    item_file.write_text((EXAMPLES_DIR / "item_basic.json").read_text())
    with pytest.raises(ConfigurationError, match="not a STAC Collection or Catalog"):
        search_catalog(item_file)


def test_search_reports_a_missing_item_file(tmp_path: Path, schema_dir: Path) -> None:
    build_catalog(factory_items(tmp_path / "models")[:2], tmp_path / "cat", schema_dir=schema_dir)
    (tmp_path / "cat" / "alps" / "alps.json").unlink()
    with pytest.raises(ConfigurationError, match="alps.json.*does not exist"):
        search_catalog(tmp_path / "cat")


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"bbox": [1, 2, 3]}, "bbox"),
        ({"bbox": [0, 10, 1, 5]}, "bbox"),
        ({"bbox": [0, 0, 1, 100]}, "bbox"),
        ({"bbox": [0, 0, 200, 1]}, "bbox"),
        ({"bbox": ["w", 0, 1, 1]}, "bbox"),
        ({"datetime": "yesterday"}, "datetime"),
        ({"datetime": "2021-01-01/2020-01-01"}, "datetime"),
        ({"datetime": "2020/2021/2022"}, "datetime"),
        ({"task": "clasification"}, "task"),
        ({"bands": []}, "bands"),
        ({"input_channels": 0}, "input_channels"),
        ({"input_channels": "4"}, "input_channels"),
        ({"framework": ""}, "framework"),
    ],
)
def test_bad_query_names_the_argument(
    built: tuple[Path, pystac.Collection], arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"^{named}"):
        search_catalog(built[0] / "cat", **arguments)


# --------------------------------------------------------------------------------------------------------- search
def test_bbox_smallest_containing_footprint_first(built: tuple[Path, pystac.Collection]) -> None:
    hits = [h for h in search_catalog(built[0] / "cat", bbox=TILE) if h.id in SPECS]
    # Alps boxes (15 deg²) tie and are sorted by id, then Europe (1000 deg²), then the globe; not the Amazon.
    assert ids(hits) == ["alps", "alps-any", "alps-rgb", "alps-swir", "europe", "globe-rgb"]
    scores = {h.id: h.score for h in hits}
    assert scores["alps"] == pytest.approx(1 / 15, rel=1e-4)  # the query is 1/15 of the footprint
    assert scores["europe"] == pytest.approx(1 / (40 * 25), rel=1e-3)
    assert scores["globe-rgb"] == pytest.approx(1 / (360 * 180), rel=1e-3)


def test_sentinel2_tile_in_one_call(built: tuple[Path, pystac.Collection]) -> None:
    hits = search_catalog(built[0] / "cat", bbox=TILE, bands=S2)
    found = ids(hits)
    assert found[0] == "alps"  # smallest box and exactly the four bands
    assert found.index("alps") < found.index("alps-rgb")  # same box, 3 of the 4 bands
    assert found.index("europe") < found.index("globe-rgb")
    assert "alps-swir" not in found  # needs B11
    assert "alps-any" not in found  # names no bands
    assert "amazon" not in found  # elsewhere
    # Examples: B4/B3/B2/B8 naming and an NDVI band computed from B08 and B04 fit; 13-band models do not.
    assert {"pytorch_geo_unet", "resnet-18_sentinel-2_all_moco_classification", "model-multi-input"} <= set(found)
    assert "example-model" not in found and ALL_BANDS_ID not in found
    best = hits[0]
    assert dict(best.factors) == pytest.approx({"bbox": 1 / 15, "bands": 1.0}, rel=1e-4)
    assert any(r.startswith("bbox:") for r in best.reasons) and any("4 of the 4" in r for r in best.reasons)
    rgb = next(h for h in hits if h.id == "alps-rgb")
    assert dict(rgb.factors)["bands"] == pytest.approx(3 / 4)


def test_bands_by_common_name_and_computed_bands(built: tuple[Path, pystac.Collection]) -> None:
    by_common = ids(search_catalog(built[0] / "cat", bands=["blue", "green", "red", "nir"]))
    assert "resnet-18_sentinel-2_all_moco_classification" in by_common  # eo:bands common names on the asset
    assert ALL_BANDS_ID not in by_common
    without_nir = ids(search_catalog(built[0] / "cat", bands=["B02", "B03", "B04"]))
    assert "resnet-18_sentinel-2_all_moco_classification" not in without_nir  # NDVI needs B08
    assert without_nir[:2] == ["alps-rgb", "globe-rgb"]  # both read exactly the given bands


def test_datetime_tightest_range_first(built: tuple[Path, pystac.Collection]) -> None:
    hits = [h for h in search_catalog(built[0] / "cat", datetime="2020-06-01T00:00:00Z") if h.id in SPECS]
    assert ids(hits) == ["alps-swir", "alps", "alps-rgb", "europe", "alps-any"]
    # An open-ended query ranks by the share of each model's range that falls inside it.
    open_hits = [h for h in search_catalog(built[0] / "cat", datetime="2022-01-01/..") if h.id in SPECS]
    assert ids(open_hits) == ["globe-rgb", "alps-any", "europe", "alps-rgb"]
    assert dict(open_hits[1].factors)["datetime"] == pytest.approx((2922 + 1) / (7305 + 1))
    early = [h for h in search_catalog(built[0] / "cat", datetime="../2015-06-01") if h.id in SPECS]
    assert ids(early) == ["amazon", "alps-any"]
    year = ids(search_catalog(built[0] / "cat", datetime="2022"))  # the whole year
    assert "globe-rgb" in year and "alps" not in year


def test_task_framework_and_channels(built: tuple[Path, pystac.Collection]) -> None:
    cat = built[0] / "cat"
    classification = set(ids(search_catalog(cat, task="classification")))
    assert {"alps", "alps-rgb", "globe-rgb", "amazon"} <= classification  # amazon: scene-classification
    assert not {"europe", "alps-swir", "alps-any"} & classification
    assert set(ids(search_catalog(cat, task="segmentation"))) == {"europe", "pytorch_geo_unet"}
    downscaling = search_catalog(cat, task="downscaling")
    assert ids(downscaling) == ["UNet_ClimateDiffuse_ERA5_Downscaling"]
    assert downscaling[0].score == pytest.approx(0.5)  # one of its two tasks
    assert downscaling[0].reasons == ("task: downscaling (1 of the model's tasks: regression, downscaling)",)
    amazon = next(h for h in search_catalog(cat, task="classification") if h.id == "amazon")
    assert amazon.reasons == ("task: scene-classification answers 'classification'",)
    assert set(ids(search_catalog(cat, framework="tensorflow"))) == {"europe"}
    assert set(ids(search_catalog(cat, framework="PYTORCH"))) == {
        "alps", "alps-rgb", "alps-swir", "amazon", "UNet_ClimateDiffuse_ERA5_Downscaling", "model-multi-input",
        "resnet-18_sentinel-2_all_moco_classification", ALL_BANDS_ID,
    }  # fmt: skip
    five = search_catalog(cat, input_channels=5, framework="PyTorch")
    assert ids(five) == ["alps-swir"]
    three = search_catalog(cat, input_channels=3)
    assert ids(three)[-1] == "alps-any" and three[-1].score == pytest.approx(0.5)  # a dynamic channel dim ranks last
    assert {"alps-rgb", "globe-rgb", "example-model"} <= set(ids(three))


def test_search_a_pystac_collection(built: tuple[Path, pystac.Collection]) -> None:
    root, collection = built
    from_dir = search_catalog(root / "cat", bbox=TILE, bands=S2)
    from_object = search_catalog(collection, bbox=TILE, bands=S2)
    assert ids(from_object) == ids(from_dir)
    assert [h.score for h in from_object] == pytest.approx([h.score for h in from_dir])
    assert Path(from_dir[0].href).resolve() == (root / "cat" / "alps" / "alps.json").resolve()


def test_hits_are_frozen_and_print(built: tuple[Path, pystac.Collection]) -> None:
    hits = search_catalog(built[0] / "cat", bbox=TILE, bands=S2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hits[0].score = 1.0  # type: ignore[misc]
    assert json.loads(json.dumps([h.to_dict() for h in hits]))[0]["id"] == "alps"
    table = format_hits(hits)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["#", "score", "id", "name"]
    rows = [line for line in lines[2:] if line[:1].isdigit()]
    assert [row.split()[2] for row in rows] == ids(hits)
    assert "bands: reads B02, B03, B04, B08" in table
    assert format_hits([]) == "No model matches."


def test_build_warns_only_for_repaired_bboxes(tmp_path: Path, schema_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_catalog([EXAMPLES_DIR / "item_basic.json"], tmp_path / "cat", schema_dir=schema_dir)
    with pytest.warns(UserWarning, match="south > north"):
        build_catalog([DATACUBE], tmp_path / "cube", schema_dir=schema_dir)


def test_edge_contact_is_no_match_and_boxes_follow_export_rules(built: tuple[Path, pystac.Collection]) -> None:
    west, south, east, north = ALPS
    touching = search_catalog(built[0] / "cat", bbox=[east, south, east + 1, north], task="object-detection")
    assert "alps-any" not in ids(touching)
    inside = search_catalog(built[0] / "cat", bbox=[west, south, (west + east) / 2, north], task="object-detection")
    assert "alps-any" in ids(inside)
    with pytest.raises(ConfigurationError, match="antimeridian"):
        search_catalog(built[0] / "cat", bbox=[east, south, west, north])


def test_version_links_follow_the_items_into_the_catalog(
    tmp_path: Path, schema_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Version links between Items of the catalog point at their catalog files, so the catalog moves and publishes
    under one href_base; a version link to an Item left out is dropped with a warning (issue 23, point 8)."""
    from mlm_export.stac.publish import prepare_items
    from mlm_export.stac.writer import save_item

    links = {
        "old": [{"rel": "successor-version", "href": "../a/item.json"}],
        "a": [{"rel": "predecessor-version", "href": "../old/item.json"},
              {"rel": "successor-version", "href": "../b/item.json"},
              {"rel": "latest-version", "href": "../b/item.json"}],
        "b": [{"rel": "predecessor-version", "href": "../a/item.json"}],
    }  # fmt: skip
    paths = {}
    for name, version_links in links.items():
        (tmp_path / "runs" / name).mkdir(parents=True)
        document = item_dict(tmp_path / "runs" / name)
        document.update(id=f"run-{name}", links=version_links)
        paths[name] = save_item(document, tmp_path / "runs" / name / "item.json")
    with caplog.at_level("WARNING", logger="mlm_export"):
        build_catalog([paths["a"], paths["b"]], tmp_path / "catalog", schema_dir=schema_dir)
    assert "predecessor-version link" in caplog.text and "old/item.json" in caplog.text
    (tmp_path / "catalog").rename(tmp_path / "moved")  # the catalog does not depend on runs/ any more
    shutil.rmtree(tmp_path / "runs")
    items = [tmp_path / "moved" / f"run-{n}" / f"run-{n}.json" for n in ("a", "b")]
    versions = [
        {x["rel"]: x["href"] for x in json.loads(p.read_text())["links"] if "version" in x["rel"]} for p in items
    ]
    assert versions == [
        {"successor-version": "../run-b/run-b.json", "latest-version": "../run-b/run-b.json"},
        {"predecessor-version": "../run-a/run-a.json"},
    ]
    for path in items:
        report = validate_item(path, schema_dir)
        assert report.valid, report.problems
    _, sent = prepare_items(items, "http://127.0.0.1:9", "models", href_base="https://example.com/cat/",
                            schema_dir=schema_dir)  # fmt: skip
    published = [{x["rel"]: x["href"] for x in d["links"] if "version" in x["rel"]} for d in sent]
    assert published[1] == {"predecessor-version": "https://example.com/cat/run-a/run-a.json"}
    assert published[0]["successor-version"] == "https://example.com/cat/run-b/run-b.json"
