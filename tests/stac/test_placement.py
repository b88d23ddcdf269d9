"""A catalog built from exported Items holds their artifacts: every catalog Item validates under our own rules."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch_models as tm
from conftest import EXAMPLES_DIR
from factories import item_dict

from mlm_export.errors import ItemValidationError, OutputExistsError
from mlm_export.stac.collection import build_catalog
from mlm_export.stac.placement import Artifact, Publication, publish_file
from mlm_export.stac.search import search_catalog
from mlm_export.stac.validate import validate_item

SHM = Path("/dev/shm")


def exported_items(root: Path) -> tuple[list[Path], Path]:
    """Two real torch exports: Items in ``root/items``, artifacts in ``root/models`` (outside the Items' directory)."""
    from mlm_export.api import export_item
    from mlm_export.stac.writer import save_item

    (root / "items").mkdir(parents=True)
    files = []
    for name, model, shape in (("mlp", tm.TinyMLP(in_features=6), [-1, 6]), ("conv", tm.TinyConvNet(), None)):
        kwargs: dict[str, Any] = {"input_shape": shape} if shape else {"input_shape": [-1, 4, 16, 16]}
        item = export_item(model, artifact_dir=root / "models" / name, name=name, item_id=name, bbox=[5, 45, 10, 48],
                           start_datetime="2020-01-01T00:00:00Z", end_datetime="2021-01-01T00:00:00Z",
                           **kwargs)  # fmt: skip
        files.append(save_item(item, root / "items" / f"{name}.json", allow_outside=[root / "models"]))
    return files, root / "models"


def sha256_of(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def catalog_files(directory: Path) -> list[Path]:
    """The files of the catalog, its search index left out (rewritten by every build)."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".mlm-index.sqlite"))


def test_catalog_of_exported_items_validates_without_allow_outside(tmp_path: Path, schema_dir: Path) -> None:
    files, models = exported_items(tmp_path)
    for path in files:  # the exported Items point outside their directory: our own rule says so
        assert not validate_item(path, schema_dir).valid
    with pytest.raises(ItemValidationError, match="points outside"):
        build_catalog(files, tmp_path / "cat", schema_dir=schema_dir)
    assert catalog_files(tmp_path / "cat") == []

    build_catalog(files, tmp_path / "cat", schema_dir=schema_dir, allow_outside=[models])
    for item_file in (tmp_path / "cat").glob("*/*.json"):
        report = validate_item(item_file, schema_dir, check_files=True)
        assert report.valid, [str(p) for p in report.problems]
        document = json.loads(item_file.read_text())
        for asset in document["assets"].values():
            placed = item_file.parent / asset["href"]
            assert placed.parent == item_file.parent and sha256_of(placed) == asset["file:checksum"]
    hits = search_catalog(tmp_path / "cat", bbox=[6, 46, 7, 47])
    assert sorted(h.id for h in hits) == ["conv", "mlp"]
    from mlm_export.loading import check_item

    assert check_item(tmp_path / "cat" / "mlp" / "mlp.json", model_class=tm.TinyMLP).ok  # loads from the catalog


def test_card_of_a_catalog_item_is_valid(tmp_path: Path, schema_dir: Path) -> None:
    from mlm_export.card import render_card, write_card

    files, models = exported_items(tmp_path)
    build_catalog(files, tmp_path / "cat", schema_dir=schema_dir, allow_outside=[models])
    written = write_card(tmp_path / "cat" / "mlp" / "mlp.json", tmp_path / "mlp.html", schema_dir=schema_dir)
    assert written.valid and written.card.problems == []
    # An Item that legitimately points outside: invalid by default, valid with allow_outside.
    assert "points outside" in render_card(files[0], schema_dir=schema_dir)
    assert not write_card(files[0], tmp_path / "outside.html", schema_dir=schema_dir).valid
    allowed = write_card(files[0], tmp_path / "allowed.md", schema_dir=schema_dir, allow_outside=[models])
    assert allowed.valid, allowed.card.problems
    assert "points outside" not in render_card(files[0], schema_dir=schema_dir, allow_outside=[models])


def test_cli_catalog_validate_and_cards(tmp_path: Path, schema_dir: Path) -> None:
    files, models = exported_items(tmp_path)
    env = {**os.environ, "MLM_EXPORT_SCHEMA_DIR": str(schema_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mlm_export", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)

    refused = cli("catalog", *map(str, files), "-o", str(tmp_path / "cat"))
    assert refused.returncode == 1 and "points outside" in refused.stderr and "--allow-outside" in refused.stderr
    built = cli("catalog", *map(str, files), "-o", str(tmp_path / "cat"), "--allow-outside", str(models), "--cards")
    assert built.returncode == 0, built.stderr
    items = sorted(str(p) for p in (tmp_path / "cat").glob("*/*.json"))
    checked = cli("validate", *items)
    assert checked.returncode == 0 and checked.stdout.count("valid ") == 2, checked.stdout
    card = (tmp_path / "cat" / "mlp" / "mlp.html").read_text()
    assert '<span class="status valid" id="validation">valid</span>' in card
    outside = cli("card", str(files[0]), "-o", str(tmp_path / "card.html"))
    assert outside.returncode == 1 and "points outside" in outside.stdout
    inside = cli("card", str(files[0]), "-o", str(tmp_path / "card2.html"), "--allow-outside", str(models))
    assert inside.returncode == 0, inside.stdout + inside.stderr


def test_across_filesystems_the_artifact_is_copied(tmp_path: Path, schema_dir: Path) -> None:
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test directory")
    source = Path(os.environ.get("PYTEST_SHM_DIR", SHM)) / f"mlm-placement-{os.getpid()}"
    source.mkdir()
    try:
        (source / "item.json").write_text(json.dumps(item_dict(source, name="copied")))
        build_catalog([source / "item.json"], tmp_path / "cat", schema_dir=schema_dir)
        placed = tmp_path / "cat" / "copied" / "weights.safetensors"
        assert not os.path.samefile(placed, source / "weights.safetensors")
        assert placed.read_bytes() == (source / "weights.safetensors").read_bytes()
        assert validate_item(tmp_path / "cat" / "copied" / "copied.json", schema_dir).valid
    finally:
        for path in source.iterdir():
            path.unlink()
        source.rmdir()


def test_a_changed_artifact_is_refused_and_nothing_is_written(tmp_path: Path, schema_dir: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "item.json").write_text(json.dumps(item_dict(tmp_path / "src", name="changed")))
    weights = tmp_path / "src" / "weights.safetensors"
    weights.write_bytes(bytes(reversed(weights.read_bytes())))  # same size, other bytes
    with pytest.raises(ItemValidationError, match="file:checksum does not match"):
        build_catalog([tmp_path / "src" / "item.json"], tmp_path / "cat", schema_dir=schema_dir, validate=False)
    assert catalog_files(tmp_path / "cat") == []  # no staging directory, no artifact, no Item
    assert not [p for p in (tmp_path / "cat").iterdir()]


def test_an_existing_different_file_is_never_replaced(tmp_path: Path, schema_dir: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "item.json").write_text(json.dumps(item_dict(tmp_path / "v1", name="model")))
    build_catalog([tmp_path / "v1" / "item.json"], tmp_path / "cat", schema_dir=schema_dir)
    first = tmp_path / "cat" / "model" / "weights.safetensors"
    old_bytes = first.read_bytes()
    old_item = json.loads((tmp_path / "cat" / "model" / "model.json").read_text())

    (tmp_path / "v2").mkdir()
    document = item_dict(tmp_path / "v2", name="model")
    new_weights = tmp_path / "v2" / "weights.safetensors"
    new_weights.write_bytes(b"\x07" * 4096)
    document["assets"]["model"]["file:checksum"] = sha256_of(new_weights)
    (tmp_path / "v2" / "item.json").write_text(json.dumps(document))
    build_catalog([tmp_path / "v2" / "item.json"], tmp_path / "cat", schema_dir=schema_dir, overwrite=True)

    assert first.read_bytes() == old_bytes  # the earlier Item's artifact is intact
    assert sha256_of(first) == old_item["assets"]["model"]["file:checksum"]
    href = json.loads((tmp_path / "cat" / "model" / "model.json").read_text())["assets"]["model"]["href"]
    version = href.split("/")[1]
    assert len(version) == 12 and href == f"./{version}/weights.safetensors"
    assert (tmp_path / "cat" / "model" / href).read_bytes() == new_weights.read_bytes()
    assert validate_item(tmp_path / "cat" / "model" / "model.json", schema_dir).valid

    # Rebuilding the catalog from its own Items changes nothing on disk.
    before = {p: p.read_bytes() for p in catalog_files(tmp_path / "cat")}
    build_catalog([tmp_path / "cat" / "model" / "model.json"], tmp_path / "cat", schema_dir=schema_dir, overwrite=True)
    assert {p: p.read_bytes() for p in catalog_files(tmp_path / "cat")} == before


def test_hostile_hrefs_are_neither_read_nor_copied(tmp_path: Path, schema_dir: Path) -> None:
    secret = tmp_path / "private" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"top secret")
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "link.bin").symlink_to(secret)
    for href in (str(secret), f"file://{secret}", "../private/secret.bin", "./link.bin"):
        document = item_dict(tmp_path / "items", name="hostile")
        document["assets"]["model"]["href"] = href
        (tmp_path / "items" / "hostile.json").write_text(json.dumps(document))
        with pytest.raises(ItemValidationError, match="points outside") as info:
            build_catalog([tmp_path / "items" / "hostile.json"], tmp_path / "cat", schema_dir=schema_dir)
        assert hashlib.sha256(b"top secret").hexdigest() not in str(info.value)
        assert catalog_files(tmp_path / "cat") == []


def test_layout_of_several_artifacts_and_urls(tmp_path: Path, schema_dir: Path) -> None:
    source = tmp_path / "src"
    (source / "data").mkdir(parents=True)
    document = item_dict(source, name="multi")
    side = source / "data" / "model.onnx.data"
    side.write_bytes(b"external data")
    document["assets"]["data"] = {"href": "./data/model.onnx.data", "roles": ["data"],
                                  "file:size": side.stat().st_size, "file:checksum": sha256_of(side)}  # fmt: skip
    document["assets"]["code"] = {"href": "https://example.com/net.py", "roles": ["code"]}
    document["assets"]["copy"] = dict(document["assets"]["model"], roles=["weights"])  # same file twice
    document["assets"]["copy"].pop("mlm:artifact_type")
    (source / "item.json").write_text(json.dumps(document))
    build_catalog([source / "item.json"], tmp_path / "cat", schema_dir=schema_dir)
    written = json.loads((tmp_path / "cat" / "multi" / "multi.json").read_text())
    hrefs = {key: asset["href"] for key, asset in written["assets"].items()}
    assert hrefs == {"model": "./weights.safetensors", "copy": "./weights.safetensors",
                     "data": "./data/model.onnx.data", "code": "https://example.com/net.py"}  # fmt: skip
    assert (tmp_path / "cat" / "multi" / "data" / "model.onnx.data").read_bytes() == b"external data"
    assert validate_item(tmp_path / "cat" / "multi" / "multi.json", schema_dir).valid
    example = EXAMPLES_DIR / "item_basic.json"  # remote hrefs only: nothing placed
    build_catalog([example], tmp_path / "remote", schema_dir=schema_dir)
    assert [p.name for p in catalog_files(tmp_path / "remote")] == ["collection.json", "example-model.json"]


def test_publish_file_never_replaces_and_undo_removes_only_its_own(tmp_path: Path) -> None:
    staged, target, other = tmp_path / "staged", tmp_path / "target", tmp_path / "other"
    staged.write_bytes(b"new")
    target.write_bytes(b"old")
    other.write_bytes(b"someone else's")
    artifact = Artifact(("model",), staged, Path("target"), 3, sha256_of(staged))  # type: ignore[arg-type]
    done = Publication()
    with pytest.raises(OutputExistsError, match="not replaced"):
        publish_file(staged, target, artifact, done)
    assert target.read_bytes() == b"old" and done.files == []
    fresh = tmp_path / "sub" / "fresh"
    done.make_parents(fresh, tmp_path)
    publish_file(staged, fresh, artifact, done)
    assert fresh.read_bytes() == b"new"
    done.undo()
    assert not (tmp_path / "sub").exists() and other.read_bytes() == b"someone else's" and staged.exists()


def test_publish_maps_catalog_artifacts_under_one_href_base(tmp_path: Path, schema_dir: Path) -> None:
    from mlm_export.stac.publish import prepare_items

    files, models = exported_items(tmp_path)
    build_catalog(files, tmp_path / "cat", schema_dir=schema_dir, allow_outside=[models])
    items = sorted((tmp_path / "cat").glob("*/*.json"))
    base = "https://models.example.org/cat"
    _, sent = prepare_items(items, "http://127.0.0.1:9", "models", href_base=f"{base}/", schema_dir=schema_dir)
    for document in sent:
        for asset in document["assets"].values():
            relative = asset["href"][len(base) + 1 :]
            assert asset["href"].startswith(f"{base}/{document['id']}/")
            assert sha256_of(tmp_path / "cat" / relative) == asset["file:checksum"]
    with pytest.raises(ItemValidationError, match="points outside"):  # the exported Items themselves: not inside
        prepare_items(files, "http://127.0.0.1:9", "models", href_base=f"{base}/", schema_dir=schema_dir)


def test_readme_catalog_example_runs(tmp_path: Path, schema_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import glob

    from mlm_export.cli import main

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Catalogs", 1)[1].split("\n### ", 1)[0]
    exported_items(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLM_EXPORT_SCHEMA_DIR", str(schema_dir))
    for line in section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines():
        argv = [
            a for arg in line.split("#", 1)[0].split()[1:] for a in (sorted(glob.glob(arg)) if "*" in arg else [arg])
        ]
        assert main(argv) == 0, line
    assert sorted(p.name for p in (tmp_path / "catalog").glob("*/*")) == sorted(
        ["TinyConvNet.safetensors", "TinyMLP.safetensors", "conv.json", "mlp.json"]
    )
