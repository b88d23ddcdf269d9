"""MLMExportCallback(collection=...): the Item carries the collection link STAC requires (issue 12, point 22)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pystac
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
from lightning.pytorch import LightningModule, Trainer  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlm_export import validate_item  # noqa: E402
from mlm_export.errors import ConfigurationError  # noqa: E402
from mlm_export.integrations.lightning import MLMExportCallback  # noqa: E402


class Classifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        self.example_input_array = torch.zeros(1, 3, 16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_with_collection(tmp_path: Path) -> dict:
    """A fit_end export with collection="models" into tmp_path/export; the saved Item document."""
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(4, 3, 16, 16, generator=generator), torch.randint(0, 2, (4,), generator=generator))
    callback = MLMExportCallback(
        dirpath=tmp_path / "export", collection="models", bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z"
    )
    trainer = Trainer(
        max_epochs=1, callbacks=[callback], default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(Classifier(), DataLoader(data, batch_size=2))
    path = Path(callback.last_exported)
    assert validate_item(path).valid
    return json.loads(path.read_text())


def test_callback_collection_links_only_a_collection_that_exists(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No ../collection.json: neither link nor field (STAC allows the field only with the link), and a warning;
    once the Collection file is there, the Item is in it (issue 23, point 9)."""
    with caplog.at_level("WARNING", logger="mlm_export"):
        document = fit_with_collection(tmp_path)
    assert "collection" not in document and all(link["rel"] != "collection" for link in document["links"])
    assert "'models'" in caplog.text and "'../collection.json'" in caplog.text
    (tmp_path / "collection.json").write_text("{}")
    document = fit_with_collection(tmp_path)
    assert document["collection"] == "models"
    assert {"rel": "collection", "href": "../collection.json", "type": "application/json"} in document["links"]


# -- on="checkpoint": the Items of one run form one Collection (issue 15, point 3) ---------------------------------


def _fit_with_rotation(tmp_path: Path, callback: MLMExportCallback, logger: object = False) -> Path:
    """Four epochs, one checkpoint each, ModelCheckpoint keeping the two newest; the checkpoint directory."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(4, 3, 16, 16, generator=generator), torch.randint(0, 2, (4,), generator=generator))
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=2, monitor="step", mode="max")
    trainer = Trainer(
        max_epochs=4, callbacks=[callback, checkpoints], default_root_dir=tmp_path, logger=logger,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", limit_val_batches=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Classifier(), DataLoader(data, batch_size=4))
    return tmp_path / "ckpt"


def _local_targets(document: dict, path: Path) -> dict[str, list[Path]]:
    """Every link of ``document`` (saved at ``path``) by rel, resolved to a local file path."""
    targets: dict[str, list[Path]] = {}
    for link in document["links"]:
        assert "://" not in link["href"], link  # everything in the run directory is linked relatively
        targets.setdefault(link["rel"], []).append((path.parent / link["href"]).resolve())
    return targets


def test_checkpoint_items_share_one_collection_that_follows_rotation(tmp_path: Path) -> None:
    bboxes = iter([[0.0, 0.0, 1.0, 1.0], [2.0, -1.0, 3.0, 0.5], [-4.0, 1.0, -3.0, 2.0], [5.0, 5.0, 6.0, 7.0]])
    callback = MLMExportCallback(on="checkpoint", datetime="2024-01-01T00:00:00Z")
    original = callback.export_module

    def with_own_bbox(*args: object, **kwargs: object) -> pystac.Item:
        item = original(*args, **kwargs)  # each checkpoint's Item a different footprint: the extent must follow
        item.bbox = next(bboxes)
        west, south, east, north = item.bbox
        item.geometry = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                             [west, north], [west, south]]]}  # fmt: skip
        return item

    callback.export_module = with_own_bbox  # type: ignore[method-assign]
    directory = _fit_with_rotation(tmp_path, callback)

    collection_path = directory / "collection.json"
    items = sorted(p for p in directory.glob("*.json") if p != collection_path)
    assert [p.name for p in items] == ["epoch=2-step=3.json", "epoch=3-step=4.json"]  # epochs 0 and 1 rotated out
    collection = json.loads(collection_path.read_text())
    assert collection["type"] == "Collection" and collection["id"] == "ckpt"  # no logger: the directory's name
    links = _local_targets(collection, collection_path)
    assert sorted(links["item"]) == [p.resolve() for p in items]  # exactly the existing Items
    assert links["root"] == [collection_path.resolve()]
    # The extent covers the two remaining Items only (the rotated-out footprints are gone).
    assert collection["extent"]["spatial"]["bbox"] == [[-4.0, 1.0, 6.0, 7.0]]
    assert collection["extent"]["temporal"]["interval"] == [["2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"]]
    report = validate_item(collection_path)
    assert report.valid, report.problems
    for path in items:
        document = json.loads(path.read_text())
        assert document["collection"] == "ckpt"
        targets = _local_targets(document, path)
        for rel in ("collection", "parent", "root"):
            assert targets[rel] == [collection_path.resolve()]
        assert all(target.is_file() for paths in targets.values() for target in paths), targets  # all resolve
        report = validate_item(path)
        assert report.valid, report.problems
    # A catalog of the run's Items moves and publishes under one href_base: its version links follow the Items.
    from mlm_export.stac.collection import build_catalog
    from mlm_export.stac.publish import prepare_items

    build_catalog(items, tmp_path / "catalog")
    ids = [json.loads(path.read_text())["id"] for path in items]
    catalog_items = [tmp_path / "catalog" / item_id / f"{item_id}.json" for item_id in ids]
    _, sent = prepare_items(catalog_items, "http://127.0.0.1:9", "run", href_base="https://example.com/cat")
    newest = {x["rel"]: x["href"] for x in sent[0]["links"] if x["rel"].endswith("-version")}
    assert newest == {
        "successor-version": f"https://example.com/cat/{ids[1]}/{ids[1]}.json",
        "latest-version": f"https://example.com/cat/{ids[1]}/{ids[1]}.json",
    }


def test_checkpoint_collection_id_from_the_logger_or_the_argument(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    callback = MLMExportCallback(on="checkpoint", bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z")
    directory = _fit_with_rotation(tmp_path / "a", callback, logger=CSVLogger(tmp_path / "logs", name="seg"))
    assert json.loads((directory / "collection.json").read_text())["id"] == "seg-version_0"
    assert callback.state_dict()["collection"]["id"] == "seg-version_0"

    callback = MLMExportCallback(on="checkpoint", collection="my-run", bbox=[0, 0, 1, 1])
    directory = _fit_with_rotation(tmp_path / "b", callback)
    assert json.loads((directory / "collection.json").read_text())["id"] == "my-run"
    assert {json.loads(p.read_text())["collection"] for p in directory.glob("epoch=*.json")} == {"my-run"}

    callback = MLMExportCallback(on="checkpoint", collection=False, bbox=[0, 0, 1, 1])
    directory = _fit_with_rotation(tmp_path / "c", callback)
    assert not (directory / "collection.json").exists()
    assert all("collection" not in json.loads(p.read_text()) for p in directory.glob("*.json"))


@pytest.mark.parametrize("bad", ["", "a/b", "../up", ".hidden", 3, True])
def test_bad_collection_id_is_refused_before_training(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"collection=.*is not a collection id") as excinfo:
        MLMExportCallback(on="checkpoint", collection=bad)
    assert "letters" in excinfo.value.hint
