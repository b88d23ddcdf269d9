"""Version extension: version, predecessor/successor/latest links, deprecation, relinking after removal."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mlm_export import export_item, save_item, validate_item  # noqa: E402
from mlm_export.errors import ConfigurationError  # noqa: E402
from mlm_export.provenance.revisions import chain_of, checkpoint_version, relink  # noqa: E402

VERSION_URI = "https://stac-extensions.github.io/version/v1.2.0/schema.json"


def version_links(path: Path) -> dict[str, str]:
    """``rel -> href`` of the version links of the Item at ``path`` (each rel at most once)."""
    links = json.loads(path.read_text())["links"]
    found = [(link["rel"], link["href"]) for link in links if link["rel"].endswith("-version")]
    assert len({rel for rel, _ in found}) == len(found)
    return dict(found)


def resolves(path: Path, href: str) -> bool:
    return (path.parent / href).resolve().is_file()


def export_revision(tmp_path: Path, name: str, **options: object) -> Path:
    torch.manual_seed(len(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        item = export_item(
            torch.nn.Linear(3, 2),
            input_shape=[-1, 3],
            tasks=["regression"],
            artifact_dir=tmp_path / name,
            item_id=f"model-{name}",
            **options,
        )
    return save_item(item, tmp_path / name / "item.json")


def test_export_with_previous_links_both_ways_and_validates(tmp_path: Path) -> None:
    first = export_revision(tmp_path, "v1", version="1.0.0")
    second = export_revision(tmp_path, "v2", version="1.1.0", previous=first)
    third = export_revision(tmp_path, "v3", version="2.0.0", previous=str(second))
    assert version_links(first) == {"successor-version": "../v2/item.json", "latest-version": "../v3/item.json"}
    assert version_links(second) == {
        "predecessor-version": "../v1/item.json",
        "successor-version": "../v3/item.json",
        "latest-version": "../v3/item.json",
    }
    assert version_links(third) == {"predecessor-version": "../v2/item.json"}
    for path, version in ((first, "1.0.0"), (second, "1.1.0"), (third, "2.0.0")):
        document = json.loads(path.read_text())
        assert document["properties"]["version"] == version
        assert VERSION_URI in document["stac_extensions"]
        report = validate_item(path)
        assert report.valid and VERSION_URI in report.schemas, report.problems
        assert all(resolves(path, href) for href in version_links(path).values())
    assert chain_of(third) == [first.resolve(), second.resolve(), third.resolve()]


def test_relink_deprecates_and_survives_a_removed_revision(tmp_path: Path) -> None:
    paths = [export_revision(tmp_path, f"r{i}", version=str(i)) for i in range(4)]
    relink(paths, deprecate=True)
    flags = [json.loads(p.read_text())["properties"].get("deprecated") for p in paths]
    assert flags == [True, True, True, None]
    paths[1].unlink()
    paths[3].unlink()  # the newest goes too: r2 becomes the latest
    relink(paths, deprecate=True)
    kept = [paths[0], paths[2]]
    assert version_links(kept[0]) == {"successor-version": "../r2/item.json", "latest-version": "../r2/item.json"}
    assert version_links(kept[1]) == {"predecessor-version": "../r0/item.json"}
    assert "deprecated" not in json.loads(kept[1].read_text())["properties"]
    for path in kept:
        assert all(resolves(path, href) for href in version_links(path).values())
        assert validate_item(path).valid


def test_previous_shares_its_collection(tmp_path: Path) -> None:
    collection_link = {"rel": "collection", "href": str(tmp_path / "collection.json")}
    (tmp_path / "collection.json").write_text("{}")  # a Collection that exists is linked (else neither link nor id)
    first = export_revision(tmp_path, "c1", version="1", collection="my-models", links=[collection_link])
    assert json.loads(first.read_text())["collection"] == "my-models"
    second = export_revision(tmp_path, "c2", version="2", previous=first)
    saved = json.loads(second.read_text())
    assert saved["collection"] == "my-models"
    assert [link["href"] for link in saved["links"] if link["rel"] == "collection"] == ["../collection.json"]
    assert validate_item(second).valid


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"version": ""}, "is not a version"),
        ({"version": True}, "is not a version"),
        ({"previous": "missing.json"}, "does not exist"),
        ({"previous": 42}, "is not an Item"),
    ],
)
def test_bad_revision_arguments(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        export_revision(tmp_path, "bad", **options)


def test_previous_that_is_not_an_item(tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "c"}))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="not a STAC Item"):
        export_revision(tmp_path, "x", previous=tmp_path / "catalog.json")
    with pytest.raises(ConfigurationError, match="not a JSON Item"):
        export_revision(tmp_path, "y", previous=tmp_path / "broken.json")


def test_checkpoint_version_template() -> None:
    assert checkpoint_version(None, epoch=3, step=120, stem="s") == "epoch=3-step=120"
    assert checkpoint_version("v{epoch}.{step}", epoch=3, step=120, stem="s") == "v3.120"
    with pytest.raises(ConfigurationError, match="placeholders"):
        checkpoint_version("{run}", epoch=0, step=0, stem="s")


def test_chain_of_stops_at_a_cycle(tmp_path: Path) -> None:
    a = export_revision(tmp_path, "a", version="1")
    b = export_revision(tmp_path, "b", version="2", previous=a)
    document = json.loads(a.read_text())  # a hostile predecessor pointing back at its successor
    document["links"].append({"rel": "predecessor-version", "href": "../b/item.json"})
    a.write_text(json.dumps(document))
    assert chain_of(b) == [a.resolve(), b.resolve()]
