"""torchgeo hook across releases: ``torchgeo.trainers`` (<= 0.8; an alias after) and ``torchgeo.tasks`` (0.9+).

The tests that need ``torchgeo.tasks`` skip on torchgeo 0.8; ``make test-py312`` runs them on torchgeo 0.10.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pystac  # noqa: F401 - imported at collection: its urllib3 import probes IPv6 with a socket
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchgeo")
pytest.importorskip("lightning")

import torchgeo.models as tgm  # noqa: E402

from mlm_export import validate_item  # noqa: E402
from mlm_export.integrations.torchgeo import (  # noqa: E402
    export_torchgeo,
    is_torchgeo_task,
    task_overrides,
    torchgeo_overrides,
    trainer_name,
)

NAMES = ["water", "forest", "field", "city"]


def _tasks_module():
    return pytest.importorskip("torchgeo.tasks", reason="torchgeo.tasks is torchgeo >= 0.9")


def test_trainer_name_reads_the_release_s_own_api() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchgeo.trainers import ClassificationTask, MoCoTask, SemanticSegmentationTask
    assert trainer_name(ClassificationTask) == "ClassificationTask"
    assert trainer_name(SemanticSegmentationTask) == "SemanticSegmentationTask"
    assert trainer_name(MoCoTask) == "MoCoTask"
    assert trainer_name(torch.nn.Linear) is None
    assert trainer_name(type("ClassificationTask", (), {})) is None  # a user's class of the same name


def test_torchgeo_tasks_classes_have_the_old_names() -> None:
    tasks = _tasks_module()
    expected = {
        tasks.Classification: "ClassificationTask",
        tasks.SemanticSegmentation: "SemanticSegmentationTask",
        tasks.ChangeDetection: "ChangeDetectionTask",
        tasks.MoCo: "MoCoTask",
        tasks.BYOL: "BYOLTask",
        tasks.BaseTask: "BaseTask",
    }
    assert {klass: trainer_name(klass) for klass in expected} == expected


def test_torchgeo_tasks_classification_exports_pretraining_tasks_and_classes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tasks = _tasks_module()
    import timm

    member = tgm.ResNet18_Weights.SENTINEL2_RGB_MOCO
    stand_in = timm.create_model("resnet18", in_chans=3, num_classes=0).state_dict()  # no download: the network only
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", lambda *a, **k: stand_in)
    task = tasks.Classification(model="resnet18", weights=member, in_channels=3, num_classes=4, labels=NAMES)
    assert is_torchgeo_task(task)
    item = export_torchgeo(task, artifact_dir=tmp_path, input_shape=[-1, 3, 64, 64])
    props = item.properties
    assert props["mlm:pretrained"] is True and props["mlm:pretrained_source"] == "SSL4EO-S12"
    assert props["mlm:tasks"] == ["scene-classification", "classification"]
    assert props["mlm:input"][0]["bands"] == ["B4", "B3", "B2"]
    assert [c["name"] for c in props["mlm:output"][0]["classification:classes"]] == NAMES
    assert props["mlm:architecture"] == type(task.model).__name__ == "ResNet"
    assert validate_item(item).valid


def test_torchgeo_tasks_segmentation_names_the_network(tmp_path: Path) -> None:
    tasks = _tasks_module()
    task = tasks.SemanticSegmentation(model="unet", backbone="resnet18", in_channels=4, num_classes=3)
    item = export_torchgeo(task, artifact_dir=tmp_path, input_shape=[-1, 4, 64, 64])
    assert item.properties["mlm:architecture"] == "Unet"
    assert item.properties["mlm:tasks"] == ["semantic-segmentation"]
    assert item.properties["mlm:pretrained"] is False


def test_time_series_tasks_put_the_time_axis_before_the_channels() -> None:
    tasks = _tasks_module()
    if not hasattr(tasks, "TemporalRegression"):
        pytest.skip("TemporalRegression is torchgeo >= 0.10")
    series = tasks.TemporalRegression(in_channels=5, num_outputs=2)
    assert task_overrides(series)["input_shape"] == [-1, -1, 5]
    assert task_overrides(series)["tasks"] == ["regression"]
    images = tasks.SpatioTemporalSegmentation(in_channels=4, num_classes=3, labels=NAMES[:3])
    overrides = torchgeo_overrides(images)
    assert overrides["input_shape"] == [-1, -1, 4, -1, -1]
    assert overrides["tasks"] == ["semantic-segmentation"]
    assert overrides["classes"] == NAMES[:3]
