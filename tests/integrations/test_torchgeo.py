"""torchgeo hook: weights metadata, transforms, trainers, datamodules and real fits — nothing is downloaded."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pystac  # noqa: F401 - imported at collection: its urllib3 import probes IPv6 with a socket
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchgeo")
pytest.importorskip("lightning")

import kornia.augmentation as K  # noqa: E402
import rasterio.warp  # noqa: E402
import torchgeo.models as tgm  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from geodata import BANDS, CLASSES, CRS, MEAN, STD, SynthDataModule, write_scene  # noqa: E402
from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from torchgeo.datasets import NonGeoDataset  # noqa: E402
from torchgeo.trainers import (  # noqa: E402
    BYOLTask,
    ChangeDetectionTask,
    ClassificationTask,
    MoCoTask,
    MultiLabelClassificationTask,
    PixelwiseRegressionTask,
    RegressionTask,
    SemanticSegmentationTask,
)

from mlm_export import validate_item  # noqa: E402
from mlm_export.api import apply_overrides, hash_artifacts, item_from_description  # noqa: E402
from mlm_export.description import Artifact, InputSpec, ModelDescription, OutputSpec  # noqa: E402
from mlm_export.errors import ConfigurationError  # noqa: E402
from mlm_export.integrations.lightning import MLMExportCallback  # noqa: E402
from mlm_export.integrations.torchgeo import (  # noqa: E402
    captured_weights,
    datamodule_overrides,
    export_torchgeo,
    read_transforms,
    resolve_weights,
    task_overrides,
    torchgeo_overrides,
    weights_overrides,
    wgs84_bounds,
)

REPO = Path(__file__).resolve().parents[2]
ENUMS = (tgm.ResNet18_Weights, tgm.ResNet50_Weights, tgm.ViTSmall16_Weights)
MEMBERS = [member for enum in ENUMS for member in enum]
#: Keys of weights_overrides that apply_overrides takes (input_shape is export_item's).
APPLY_KEYS = (
    "bands", "value_scaling", "resize_type", "pretrained", "pretrained_source", "links", "license", "name",
    "hyperparameters", "description",
)  # fmt: skip


@pytest.fixture(autouse=True)
def no_weight_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to fetch weights fails the test (the socket is closed as well, by pytest-socket)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"weights download attempted: {args}")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", refuse)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[float, float, float, float]]]:
    root = tmp_path_factory.mktemp("scene")
    return root, write_scene(root)


def expected_bbox(bounds: list[tuple[float, float, float, float]]) -> list[float]:
    """The union of the tiles' WGS84 boxes, each transformed independently by rasterio with densified edges."""
    boxes = [rasterio.warp.transform_bounds(CRS, "EPSG:4326", *b, densify_pts=21) for b in bounds]
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def band_response(transforms: object, channels: int) -> tuple[list[float], list[float]]:
    """Run the transforms on two constant images and return per-band (input, output) pairs' implied mean/std."""
    lows = torch.linspace(10.0, 400.0, channels)
    highs = lows + 1000.0
    outputs = []
    for values in (lows, highs):
        image = values.view(1, channels, 1, 1).expand(1, channels, 256, 256).clone()
        outputs.append(transforms(image).mean(dim=(0, 2, 3)))
    std = (highs - lows) / (outputs[1] - outputs[0])
    mean = lows - outputs[0] * std
    return mean.tolist(), std.tolist()


# -- transforms -------------------------------------------------------------------------------------------------


def test_kornia_sequence_is_read_from_attributes() -> None:
    seq = K.AugmentationSequential(
        K.Normalize(mean=torch.tensor([1.0, 2.0, 3.0]), std=torch.tensor([2.0, 4.0, 8.0])),
        K.Resize((48, 40)),
        K.RandomHorizontalFlip(p=0.5),
        K.CenterCrop(32),
        data_keys=None,
    )
    info = read_transforms(seq)
    assert info.mean == (1.0, 2.0, 3.0)
    assert info.std == (2.0, 4.0, 8.0)
    assert info.resize_type == "interpolation-linear"
    assert info.size == (32, 32)
    scaling = info.value_scaling(3)
    assert [(s.type, s.mean, s.stddev) for s in scaling] == [("z-score", 1.0, 2.0), ("z-score", 2.0, 4.0),
                                                             ("z-score", 3.0, 8.0)]  # fmt: skip


def test_chained_normalize_folds_into_one_z_score() -> None:
    chain = T.Compose([
        T.Normalize(mean=[3.0, 2.0, 0.0], std=[85.0, 101.0, 129.0]),
        T.Normalize(mean=[0.0], std=[1 / 255]),
        T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])  # fmt: skip
    scaling = read_transforms(chain).value_scaling(3)
    x = torch.rand(1, 3, 8, 8) * 300
    expected = chain(x.clone())
    folded = torch.stack([(x[:, c] - s.mean) / s.stddev for c, s in enumerate(scaling)], dim=1)
    assert torch.allclose(folded, expected, rtol=1e-5, atol=1e-5)


def test_denormalize_and_broadcast_and_identity() -> None:
    info = read_transforms([K.Normalize(mean=torch.tensor([0.0]), std=torch.tensor([255.0]))])
    scaling = info.value_scaling(4)
    assert len(scaling) == 4 and all((s.mean, s.stddev) == (0.0, 255.0) for s in scaling)
    roundtrip = read_transforms(
        [K.Normalize(mean=torch.tensor([5.0]), std=torch.tensor([2.0])),
         K.Denormalize(mean=torch.tensor([5.0]), std=torch.tensor([2.0]))]
    )  # fmt: skip
    assert roundtrip.value_scaling(2) is None
    with pytest.raises(ConfigurationError, match="normalise 3 channels"):
        read_transforms(T.Normalize([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])).value_scaling(4)


def test_unknown_deterministic_transform_warns() -> None:
    from torchgeo.transforms import AppendNDVI

    with pytest.warns(UserWarning, match="AppendNDVI"):
        read_transforms(K.AugmentationSequential(AppendNDVI(index_nir=3, index_red=2), data_keys=None))


def test_wgs84_bounds_densifies_edges() -> None:
    box = (200_000.0, 5_000_000.0, 800_000.0, 6_000_000.0)  # 600 km wide: edges bulge in WGS84
    ours = wgs84_bounds(box, CRS)
    densified = rasterio.warp.transform_bounds(CRS, "EPSG:4326", *box, densify_pts=21)
    xs, ys = rasterio.warp.transform(
        CRS, "EPSG:4326", [box[0], box[2], box[2], box[0]], [box[1], box[1], box[3], box[3]]
    )
    corners_only = (min(xs), min(ys), max(xs), max(ys))
    assert ours == pytest.approx(densified, abs=1e-9)
    assert ours[3] > corners_only[3] + 1e-3  # the northern edge bulges beyond its corners


# -- weights ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("member", MEMBERS, ids=str)
def test_every_weights_member_gives_scaling_bands_and_a_valid_item(member: object, tmp_path: Path) -> None:
    meta = member.meta
    channels = meta["in_chans"]
    overrides = weights_overrides(member)

    # value_scaling against the enum's own transforms, run on constant images
    scaling = overrides.get("value_scaling")
    mean, std = band_response(member.transforms, channels)
    if scaling is None:
        assert mean == pytest.approx([0.0] * channels, abs=1e-3) and std == pytest.approx([1.0] * channels, rel=1e-4)
    else:
        assert len(scaling) == channels
        assert [s.mean for s in scaling] == pytest.approx(mean, rel=1e-3, abs=1e-2)
        assert [s.stddev for s in scaling] == pytest.approx(std, rel=1e-3)
    normalizes = [t for t in getattr(member.transforms, "children", list)() if type(t).__name__ == "Normalize"]
    if len(normalizes) == 1:  # a single Normalize: the values are the enum's own, broadcast per band
        values = [float(v) for v in normalizes[0].mean]
        assert [s.mean for s in scaling] == (values * channels if len(values) == 1 else values)

    if meta.get("bands"):
        assert overrides["bands"] == list(meta["bands"])
    else:
        assert "bands" not in overrides
    assert overrides["pretrained"] is True
    assert overrides["pretrained_source"] == meta["dataset"]
    assert overrides["input_shape"][:2] == [-1, channels]
    rels = {link.rel: link.href for link in overrides["links"]}
    assert rels["cite-as"] == meta["publication"]
    assert rels["code"] == meta["repo"]
    assert overrides["hyperparameters"]["weights"] == str(member)

    # metadata -> description -> item: the same apply_overrides path export_item takes, on a stand-in description
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"\0" * 64)
    size = [s if s != -1 else 64 for s in overrides["input_shape"][2:]]
    described = ModelDescription(
        name="stand-in",
        architecture=str(meta["model"]),
        tasks=("similarity-search",),
        inputs=(InputSpec("input", (-1, channels, *size), ("batch", "channel", "height", "width"), "float32"),),
        outputs=(OutputSpec("embedding", (-1, 512), ("batch", "embedding"), "float32"),),
        artifacts=(Artifact("model", ("mlm:model",), path=str(weights), artifact_type="safetensors.torch.save_file"),),
    )
    described = apply_overrides(described, **{k: overrides[k] for k in APPLY_KEYS if k in overrides})
    item = item_from_description(hash_artifacts(described))
    report = validate_item(item)
    assert report.valid, report.problems


ARCHS = {
    "ResNet18_Weights": tgm.resnet18,
    "ResNet50_Weights": tgm.resnet50,
    "ViTSmall16_Weights": tgm.vit_small_patch16_224,
}
FULL = [tgm.ResNet18_Weights.SENTINEL2_ALL_MOCO, tgm.ResNet50_Weights.SENTINEL2_ALL_SOFTCON,
        tgm.ViTSmall16_Weights.SENTINEL2_ALL_MOCO]  # fmt: skip


@pytest.mark.parametrize("member", FULL, ids=str)
def test_full_export_of_a_real_architecture_per_enum(member: object, tmp_path: Path) -> None:
    build = ARCHS[type(member).__name__]
    model = build(weights=None, in_chans=member.meta["in_chans"], num_classes=0)  # random init, no download
    item = export_torchgeo(model, weights=member, artifact_dir=tmp_path, tasks=["similarity-search"])
    assert validate_item(item).valid
    props = item.properties
    spec = props["mlm:input"][0]
    # the weights' 224 crop is where measuring starts: a ResNet takes any size (measured -1), a ViT only 224
    fixed = "ViT" in type(member).__name__
    assert spec["input"]["shape"] == ([-1, 13, 224, 224] if fixed else [-1, 13, -1, -1])
    assert spec["bands"] == list(member.meta["bands"])
    assert [v["stddev"] for v in spec["value_scaling"]] == pytest.approx(
        band_response(member.transforms, 13)[1], rel=1e-3
    )
    assert props["mlm:pretrained"] is True and props["mlm:pretrained_source"] == member.meta["dataset"]
    assert props["mlm:total_parameters"] == sum(p.numel() for p in model.parameters())
    assert {link.rel for link in item.links} >= {"cite-as", "code", "via"}


def test_weights_by_name_true_and_path(tmp_path: Path) -> None:
    assert resolve_weights("ResNet18_Weights.SENTINEL2_RGB_MOCO") is tgm.ResNet18_Weights.SENTINEL2_RGB_MOCO
    assert weights_overrides(True)["pretrained_source"] == "ImageNet"
    local = tmp_path / "backbone.pth"
    local.write_bytes(b"x")
    overrides = weights_overrides(str(local))
    assert overrides["pretrained_source"] == "backbone.pth"
    assert str(tmp_path) not in json.dumps(overrides)
    with pytest.raises(ConfigurationError, match="neither a torchgeo weights name"):
        resolve_weights("NoSuch_Weights.NOPE")


def test_weights_are_captured_from_the_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import timm

    member = tgm.ResNet18_Weights.SENTINEL2_RGB_MOCO
    stand_in = timm.create_model("resnet18", in_chans=3, num_classes=0).state_dict()  # replaces only the network
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", lambda *a, **k: stand_in)
    task = ClassificationTask(model="resnet18", weights=member, in_channels=3, num_classes=4)
    assert "weights" not in task.hparams  # torchgeo drops it: it must be captured from the instance
    assert captured_weights(task) is member
    item = export_torchgeo(task, artifact_dir=tmp_path, input_shape=[-1, 3, 64, 64])
    props = item.properties
    assert props["mlm:pretrained"] is True and props["mlm:pretrained_source"] == "SSL4EO-S12"
    assert props["mlm:input"][0]["bands"] == ["B4", "B3", "B2"]
    assert props["mlm:hyperparameters"]["weights"] == str(member)
    assert props["mlm:tasks"] == ["scene-classification", "classification"]
    assert validate_item(item).valid

    with pytest.raises(ConfigurationError, match="in_channels=5"):
        torchgeo_overrides(ClassificationTask(model="resnet18", in_channels=5, num_classes=2), weights=member)


# -- trainers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "tasks", "shape"),
    [
        (lambda: MultiLabelClassificationTask(model="resnet18", in_channels=6, num_classes=5),
         ["scene-classification", "classification"], [-1, 6, -1, -1]),
        (lambda: RegressionTask(model="resnet18", in_channels=2, num_outputs=1), ["regression"], [-1, 2, -1, -1]),
        (lambda: PixelwiseRegressionTask(model="unet", backbone="resnet18", in_channels=3), ["regression"],
         [-1, 3, -1, -1]),
        (lambda: ChangeDetectionTask(model="unet", backbone="resnet18", in_channels=3), ["semantic-segmentation"],
         [-1, 6, -1, -1]),
        (lambda: ChangeDetectionTask(model="fcsiamdiff", backbone="resnet18", in_channels=3),
         ["semantic-segmentation"], [-1, 2, 3, -1, -1]),
        (lambda: MoCoTask(model="resnet18", in_channels=4, version=2, memory_bank_size=0),
         ["similarity-search"], [-1, 4, -1, -1]),
        (lambda: BYOLTask(model="resnet18", in_channels=4), ["similarity-search"], [-1, 4, -1, -1]),
    ],
)  # fmt: skip
def test_task_overrides(build: object, tasks: list[str], shape: list[int]) -> None:
    task = build()
    overrides = task_overrides(task)
    assert overrides["tasks"] == tasks
    assert overrides["input_shape"] == shape
    hyper = overrides["hyperparameters"]
    assert hyper["lr"] == task.hparams["lr"]
    assert hyper["model"] == task.hparams["model"]
    assert all(set(k) <= set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-") for k in hyper)
    json.dumps(hyper)


def test_not_a_task_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a torchgeo trainer"):
        task_overrides(torch.nn.Linear(2, 2))


# -- datamodules ------------------------------------------------------------------------------------------------


def test_datamodule_overrides_extent_bands_scaling_links(scene: tuple[Path, dict]) -> None:
    root, bounds = scene
    dm = SynthDataModule(root)
    dm.setup("fit")
    dm.setup("test")
    overrides = datamodule_overrides(dm, dataset_hrefs={"train": "https://example.com/collections/synth-train"})
    assert overrides["bands"] == list(BANDS)
    assert overrides["classes"] == list(CLASSES)
    assert [(s.mean, s.stddev) for s in overrides["value_scaling"]] == list(zip(MEAN, STD, strict=True))
    assert overrides["bbox"] == pytest.approx(expected_bbox(list(bounds.values())), abs=1e-9)
    assert overrides["start_datetime"].date().isoformat() == "2023-01-05"
    assert overrides["end_datetime"].date().isoformat() == "2023-09-20"
    assert overrides["hyperparameters"] == {"crs": CRS, "resolution": [10.0, 10.0]}
    assert overrides["input_shape"] == [-1, 4, 64, 64]
    links = {link.extra["ml-aoi:split"]: link for link in overrides["links"]}
    assert set(links) == {"train", "validate", "test"}
    assert links["train"].href == "https://example.com/collections/synth-train"
    assert links["test"].href == "./datasets/SynthImage/test"
    assert all(link.rel == "derived_from" for link in links.values())
    with pytest.raises(ConfigurationError, match="local path"):
        datamodule_overrides(dm, dataset_hrefs={"train": str(root)})


class TinyNonGeo(NonGeoDataset):
    """A non-geo dataset with band and class names and its own normalising transform."""

    bands = ("VV", "VH")
    classes = ("dry", "flooded")

    def __init__(self) -> None:
        self.transforms = T.Normalize(mean=[-12.5, -20.0], std=[5.0, 6.0])

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.zeros(2, 8, 8), "label": torch.tensor(index % 2)}


def test_non_geo_dataset_gives_bands_classes_and_scaling_but_no_extent() -> None:
    dataset = torch.utils.data.Subset(TinyNonGeo(), [0, 1])
    overrides = datamodule_overrides(dataset)
    assert overrides["bands"] == ["VV", "VH"]
    assert overrides["classes"] == ["dry", "flooded"]
    assert [(s.mean, s.stddev) for s in overrides["value_scaling"]] == [(-12.5, 5.0), (-20.0, 6.0)]
    assert "bbox" not in overrides and "start_datetime" not in overrides
    (link,) = overrides["links"]
    assert link.href == "./datasets/TinyNonGeo/train" and link.extra == {"ml-aoi:split": "train"}


def test_export_torchgeo_with_datamodule(scene: tuple[Path, dict], tmp_path: Path) -> None:
    root, bounds = scene
    dm = SynthDataModule(root)
    dm.setup("fit")
    task = SemanticSegmentationTask(model="unet", backbone="resnet18", in_channels=4, num_classes=3)
    item = export_torchgeo(task, datamodule=dm, artifact_dir=tmp_path)
    assert validate_item(item).valid
    assert item.bbox == pytest.approx(expected_bbox([bounds["train"], bounds["val"]]), abs=1e-9)
    out = item.properties["mlm:output"][0]
    assert [c["name"] for c in out["classification:classes"]] == list(CLASSES)
    assert item.properties["mlm:hyperparameters"]["num_classes"] == 3


# -- real fits through the Lightning callback -------------------------------------------------------------------


def fit(task: object, dm: SynthDataModule, callbacks: list[object], tmp_path: Path, **schedule: object) -> Trainer:
    """A quiet CPU fit of ``task`` (``schedule``: the Trainer's run length, default one fast_dev_run batch)."""
    trainer = Trainer(
        **(schedule or {"fast_dev_run": True}),
        callbacks=callbacks,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, datamodule=dm)
    return trainer


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_fast_dev_run_fit_exports_a_valid_item(kind: str, scene: tuple[Path, dict], tmp_path: Path) -> None:
    root, bounds = scene
    dm = SynthDataModule(root, kind=kind, patch_size=32 if kind == "classification" else 64)
    if kind == "classification":
        task = ClassificationTask(model="resnet18", weights=None, in_channels=4, num_classes=3)
        tasks = ["scene-classification", "classification"]
    else:
        task = SemanticSegmentationTask(model="unet", backbone="resnet18", weights=None, in_channels=4, num_classes=3)
        tasks = ["semantic-segmentation"]
    callback = MLMExportCallback(dirpath=tmp_path / "export")
    fit(task, dm, [callback], tmp_path)

    assert len(callback.exported) == 1
    path = Path(callback.exported[0])
    assert path.parent == tmp_path / "export"
    report = validate_item(path)
    assert report.valid, report.problems
    document = json.loads(path.read_text())
    props = document["properties"]
    assert props["mlm:tasks"] == tasks
    spec = props["mlm:input"][0]
    assert spec["bands"] == list(BANDS)
    assert [(v["mean"], v["stddev"]) for v in spec["value_scaling"]] == list(zip(MEAN, STD, strict=True))
    assert spec["input"]["shape"][:2] == [-1, 4]
    assert document["bbox"] == pytest.approx(expected_bbox([bounds["train"], bounds["val"]]), abs=1e-9)
    assert props["start_datetime"].startswith("2023-01-05") and props["end_datetime"].startswith("2023-06-10")
    assert props["mlm:hyperparameters"]["lr"] == task.hparams["lr"]
    assert props["mlm:hyperparameters"]["loss"] == "ce"
    assert props["mlm:pretrained"] is False and props["mlm:pretrained_source"] is None
    splits = {link.get("ml-aoi:split") for link in document["links"] if link["rel"] == "derived_from"}
    assert splits == {"train", "validate"}
    assert str(tmp_path) not in path.read_text()
    weights = path.parent / document["assets"]["model"]["href"]
    digest = "1220" + hashlib.sha256(weights.read_bytes()).hexdigest()
    assert document["assets"]["model"]["file:checksum"] == digest
    if kind == "segmentation":
        assert [c["name"] for c in props["mlm:output"][0]["classification:classes"]] == list(CLASSES)


def test_short_fit_publishes_the_torchgeo_checkpoint(scene: tuple[Path, dict], tmp_path: Path) -> None:
    root, bounds = scene
    dm = SynthDataModule(root, kind="classification", patch_size=32)
    task = ClassificationTask(model="resnet18", in_channels=4, num_classes=3, class_weights=[1.0, 2.0, 1.0])
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")
    callback = MLMExportCallback()
    fit(task, dm, [callback, checkpoints], tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)

    checkpoint = Path(checkpoints.best_model_path)
    path = checkpoint.with_suffix(".json")
    assert callback.exported == [str(path)]
    assert validate_item(path).valid
    document = json.loads(path.read_text())
    (asset,) = [a for a in document["assets"].values() if "mlm:model" in a["roles"]]
    assert asset["href"] in (checkpoint.name, f"./{checkpoint.name}")
    assert {"mlm:model", "mlm:checkpoint"} <= set(asset["roles"]) and asset["mlm:artifact_type"] == "torch.save"
    digest = hashlib.sha256()
    with checkpoint.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    assert asset["file:checksum"] == "1220" + digest.hexdigest()
    props = document["properties"]
    assert props["mlm:tasks"] == ["scene-classification", "classification"]
    assert props["mlm:hyperparameters"]["class_weights"] == [1.0, 2.0, 1.0]
    assert props["mlm:input"][0]["bands"] == list(BANDS)
    assert document["bbox"] == pytest.approx(expected_bbox([bounds["train"], bounds["val"]]), abs=1e-9)


def test_import_mlm_export_does_not_import_torchgeo() -> None:
    code = (
        "import sys, mlm_export, mlm_export.integrations\n"
        "print(sorted(m for m in ('torch', 'lightning', 'torchgeo') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
