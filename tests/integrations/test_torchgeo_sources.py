"""export_torchgeo: each source says only what it knows; measurement wins over sizes seen (issue 12, point 18)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pystac  # noqa: F401 - imported at collection: its urllib3 import probes IPv6 with a socket
import pytest

pytest.importorskip("torchgeo")
import torchgeo.models as tgm
from geodata import SynthDataModule, write_scene
from torchgeo.trainers import ClassificationTask, SemanticSegmentationTask

from mlm_export.integrations.torchgeo import _resize_type, export_torchgeo

EXTENT = {"bbox": [0, 0, 1, 1], "datetime": "2024-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory: pytest.TempPathFactory) -> SynthDataModule:
    root = tmp_path_factory.mktemp("scene")
    write_scene(root)
    dm = SynthDataModule(root, patch_size=64)
    dm.setup("fit")
    return dm


def test_fully_convolutional_unet_is_not_fixed_to_the_patch_size(datamodule: SynthDataModule, tmp_path: Path) -> None:
    task = SemanticSegmentationTask(model="unet", backbone="resnet18", in_channels=4, num_classes=3)
    with pytest.warns(UserWarning, match="placeholder hrefs"):
        item = export_torchgeo(task, datamodule=datamodule, artifact_dir=tmp_path)
    shape = item.properties["mlm:input"][0]["input"]["shape"]
    assert shape[:2] == [-1, 4] and shape[2:] == [-1, -1]  # measured dynamic, although patches were 64 x 64
    assert item.properties["mlm:architecture"] == type(task.model).__name__ == "Unet"


def test_public_dataset_hrefs_give_no_placeholder_warning(datamodule: SynthDataModule, tmp_path: Path) -> None:
    task = SemanticSegmentationTask(model="unet", backbone="resnet18", in_channels=4, num_classes=3)
    hrefs = {split: f"https://example.com/data/{split}" for split in ("train", "validate")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        item = export_torchgeo(task, datamodule=datamodule, dataset_hrefs=hrefs, artifact_dir=tmp_path)
    assert not [w for w in caught if "placeholder" in str(w.message)]
    assert {link.href for link in item.links if link.rel == "derived_from"} <= set(hrefs.values())


def test_weights_the_task_was_not_built_with_are_not_pretraining(tmp_path: Path) -> None:
    task = ClassificationTask(model="resnet18", weights=None, in_channels=13, num_classes=10)
    with pytest.warns(UserWarning, match="task was built with weights=None"):
        item = export_torchgeo(
            task, weights=tgm.ResNet18_Weights.SENTINEL2_ALL_MOCO, artifact_dir=tmp_path, input_shape=[-1, 13, 64, 64],
            **EXTENT,
        )  # fmt: skip
    assert "mlm:pretrained" not in item.properties
    assert item.properties["mlm:architecture"] == type(task.model).__name__


def test_resize_type_from_the_datamodule_wins_and_the_disagreement_is_named() -> None:
    with pytest.warns(UserWarning, match="'interpolation-linear'.*None"):
        assert _resize_type({}, {"resize_type": "interpolation-linear"}, has_data=True) is None
    assert _resize_type({"resize_type": "crop"}, {"resize_type": "crop"}, has_data=True) == "crop"
    assert _resize_type({}, {"resize_type": "interpolation-linear"}, has_data=False) == "interpolation-linear"


def test_torchvision_weights_preset_fills_scaling_and_resize(tmp_path: Path) -> None:
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    preset = weights.transforms()  # ground truth: what torchvision feeds the model (8-bit input / 255, then z-score)
    model = torchvision.models.resnet18(weights=None)  # random init: nothing downloaded
    item = export_torchgeo(model, weights=weights, artifact_dir=tmp_path, **EXTENT)
    entry = item.properties["mlm:input"][0]
    assert [v["type"] for v in entry["value_scaling"]] == ["z-score"] * 3
    assert [v["mean"] for v in entry["value_scaling"]] == pytest.approx([255 * m for m in preset.mean])
    assert [v["stddev"] for v in entry["value_scaling"]] == pytest.approx([255 * s for s in preset.std])
    assert entry["resize_type"] == "interpolation-linear"
    assert entry["input"]["shape"] == [-1, 3, -1, -1]  # a ResNet takes any size; the 224 crop only started the run
