"""MLMExportCallback: real Lightning fits on random data (CPU), items validated and checked against the files."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pystac  # noqa: F401 - imported at collection: its urllib3 import probes IPv6 with a socket
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from lightning.pytorch import LightningDataModule, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mlm_export import validate_item  # noqa: E402
from mlm_export.errors import ConfigurationError, UntrustedPickleError  # noqa: E402
from mlm_export.integrations.lightning import MLMExportCallback  # noqa: E402

HPARAM_KEY = r"^[0-9a-zA-Z_.-]+$"


class TinyNet(LightningModule):
    """A 3-channel image classifier with an example_input_array."""

    def __init__(self, num_classes: int = 4, lr: float = 0.05, optimizer: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
        )
        self.example_input_array = torch.zeros(1, 3, 16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class NoExampleNet(TinyNet):
    """The same net without example_input_array: the callback takes a batch from the datamodule."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.example_input_array = None
        # Runs on 24 x 24 inputs only: the dry-run must use the datamodule's batch, not a guessed size.
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 24 * 24, 4))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch["image"]), batch["label"])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", nn.functional.cross_entropy(self(batch["image"]), batch["label"]))


class RandomImages(Dataset):
    def __init__(self, count: int = 8, size: int = 16, as_dict: bool = False) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.rand(count, 3, size, size, generator=generator)
        self.y = torch.randint(0, 4, (count,), generator=generator)
        self.as_dict = as_dict

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> object:
        if self.as_dict:
            return {"image": self.x[index], "label": self.y[index]}
        return self.x[index], self.y[index]


class RandomDataModule(LightningDataModule):
    def __init__(self, size: int = 16, as_dict: bool = False) -> None:
        super().__init__()
        self.size = size
        self.as_dict = as_dict

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomImages(size=self.size, as_dict=self.as_dict), batch_size=4)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomImages(count=4, size=self.size, as_dict=self.as_dict), batch_size=4)


def trainer(tmp_path: Path, callbacks: list, **kwargs: object) -> Trainer:
    options = {
        "accelerator": "cpu",
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "default_root_dir": tmp_path,
        **kwargs,
    }
    return Trainer(callbacks=callbacks, **options)


def run_fit(trainer: Trainer, model: LightningModule, datamodule: LightningDataModule | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if datamodule is None:
            trainer.fit(model, train_dataloaders=DataLoader(RandomImages(), batch_size=4))
        else:
            trainer.fit(model, datamodule=datamodule)


def sha256_multihash(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_on_value_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"on='epoch'.*fit_end.*checkpoint") as excinfo:
        MLMExportCallback(on="epoch")
    assert isinstance(excinfo.value, ValueError)


def test_fast_dev_run_exports_in_memory_module(tmp_path: Path) -> None:
    callback = MLMExportCallback(dirpath=tmp_path / "mlm", name="tiny-net")
    model = TinyNet(optimizer={"name": "sgd", "momentum 0.9": 0.9})
    run_fit(trainer(tmp_path, [callback], fast_dev_run=True), model)

    assert len(callback.exported) == 1
    path = Path(callback.exported[0])
    assert path.parent == tmp_path / "mlm" and path.exists()
    report = validate_item(path)
    assert report.valid, report.problems
    document = json.loads(path.read_text())
    props = document["properties"]
    assert props["mlm:name"] == "tiny-net"
    assert props["mlm:input"][0]["input"]["shape"] == [-1, 3, -1, -1]
    assert props["mlm:total_parameters"] == sum(p.numel() for p in model.parameters())
    hyper = props["mlm:hyperparameters"]
    assert hyper["num_classes"] == 4 and hyper["lr"] == 0.05
    assert hyper["optimizer.name"] == "sgd" and hyper["optimizer.momentum_0.9"] == 0.9
    assert hyper["precision"] == "32-true"
    assert all(re.match(HPARAM_KEY, k) for k in hyper)
    model_asset = document["assets"]["model"]
    assert "mlm:model" in model_asset["roles"]
    assert model_asset["file:checksum"] == sha256_multihash(path.parent / model_asset["href"])
    assert callback.state_dict()["exported"] == [str(path)]


def test_fit_with_checkpoint_publishes_the_checkpoint(tmp_path: Path) -> None:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")
    callback = MLMExportCallback()
    run_fit(
        trainer(tmp_path, [callback, checkpoints], max_epochs=1, limit_train_batches=2, limit_val_batches=1),
        TinyNet(),
        RandomDataModule(),
    )
    checkpoint = Path(checkpoints.best_model_path)
    assert checkpoint.name == "epoch=0-step=2.ckpt"
    path = checkpoint.with_suffix(".json")
    assert callback.exported == [str(path)]
    report = validate_item(path)
    assert report.valid, report.problems

    text = path.read_text()
    assert str(tmp_path) not in text
    document = json.loads(text)
    assets = [a for a in document["assets"].values() if "mlm:model" in a["roles"]]
    assert len(assets) == 1
    asset = assets[0]
    assert asset["href"] == "./epoch=0-step=2.ckpt" or asset["href"] == "epoch=0-step=2.ckpt"
    assert {"mlm:model", "mlm:checkpoint"} <= set(asset["roles"])
    assert asset["mlm:artifact_type"] == "torch.save"
    assert asset["file:checksum"] == sha256_multihash(checkpoint)
    assert asset["file:size"] == checkpoint.stat().st_size
    hyper = document["properties"]["mlm:hyperparameters"]
    assert hyper["lr"] == 0.05 and hyper["num_classes"] == 4
    assert document["properties"]["mlm:input"][0]["input"]["shape"][:2] == [-1, 3]


def test_on_checkpoint_exports_every_checkpoint(tmp_path: Path) -> None:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    callback = MLMExportCallback(on="checkpoint")
    run_fit(
        trainer(tmp_path, [callback, checkpoints], max_epochs=2, limit_train_batches=1, limit_val_batches=1),
        TinyNet(),
        RandomDataModule(),
    )
    files = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    assert [f.name for f in files] == ["epoch=0-step=1.ckpt", "epoch=1-step=2.ckpt"]
    items = [f.with_suffix(".json") for f in files]
    assert sorted(callback.exported) == sorted(str(p) for p in items)
    ids = set()
    for checkpoint, item in zip(files, items, strict=True):
        document = json.loads(item.read_text())
        ids.add(document["id"])
        (asset,) = [a for a in document["assets"].values() if "mlm:model" in a["roles"]]
        assert asset["file:checksum"] == sha256_multihash(checkpoint)
        assert validate_item(item).valid
    assert len(ids) == 2


def test_on_checkpoint_removes_items_of_rotated_out_checkpoints(tmp_path: Path) -> None:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=1)  # keeps the latest only
    callback = MLMExportCallback(on="checkpoint")
    run_fit(
        trainer(tmp_path, [callback, checkpoints], max_epochs=3, limit_train_batches=1, limit_val_batches=0),
        TinyNet(),
        RandomDataModule(),
    )
    remaining = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert remaining == ["collection.json", "epoch=2-step=3.ckpt", "epoch=2-step=3.json"]  # the run's Collection
    assert callback.exported == [str(tmp_path / "ckpt" / "epoch=2-step=3.json")]


def test_batch_from_datamodule_when_no_example_input_array(tmp_path: Path) -> None:
    callback = MLMExportCallback(dirpath=tmp_path / "mlm")
    run_fit(trainer(tmp_path, [callback], fast_dev_run=True), NoExampleNet(), RandomDataModule(size=24, as_dict=True))
    document = json.loads(Path(callback.exported[0]).read_text())
    assert document["properties"]["mlm:input"][0]["input"]["shape"] == [-1, 3, 24, 24]


def test_bf16_true_precision_gives_bfloat16_inputs(tmp_path: Path) -> None:
    callback = MLMExportCallback(dirpath=tmp_path / "mlm")
    run_fit(trainer(tmp_path, [callback], fast_dev_run=True, precision="bf16-true"), TinyNet())
    document = json.loads(Path(callback.exported[0]).read_text())
    props = document["properties"]
    assert props["mlm:input"][0]["input"]["data_type"] == "other"  # MLM has no bfloat16
    assert props["mlm:hyperparameters"]["precision"] == "bf16-true"

    # A checkpoint is rebuilt by model_class (float32 parameters), so its inputs are float32.
    callback = MLMExportCallback()
    run_fit(
        trainer(tmp_path / "ckpt", [callback, ModelCheckpoint(dirpath=tmp_path / "ckpt")], max_epochs=1,
                limit_train_batches=1, limit_val_batches=0, precision="bf16-true"),
        TinyNet(),
        RandomDataModule(),
    )  # fmt: skip
    document = json.loads(Path(callback.exported[0]).read_text())
    assert document["properties"]["mlm:input"][0]["input"]["data_type"] == "float32"


def test_only_rank_zero_exports_and_state_round_trips(tmp_path: Path) -> None:
    callback = MLMExportCallback(dirpath=tmp_path)
    module = TinyNet()
    gathered = []  # a sharded strategy's state-dict gather is collective: rank 1 must take part in it

    def gather() -> dict:
        gathered.append(True)
        return module.state_dict()

    rank_one = SimpleNamespace(
        is_global_zero=False, checkpoint_callback=None, strategy=SimpleNamespace(lightning_module_state_dict=gather)
    )
    callback.on_fit_end(rank_one, module)
    assert gathered == [True]
    assert callback.exported == [] and list(tmp_path.iterdir()) == []
    other = MLMExportCallback()
    other.load_state_dict({"exported": ["a.json"], "by_checkpoint": {"a.ckpt": "a.json"}})
    assert other.last_exported == "a.json"
    assert other.state_dict() == {"exported": ["a.json"], "by_checkpoint": {"a.ckpt": "a.json"}}


class Mode(enum.Enum):
    """A hyperparameter value that weights_only unpickling refuses."""

    FAST = "fast"


def test_checkpoint_with_pickled_hparams_is_trusted_with_a_warning(tmp_path: Path) -> None:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    callback = MLMExportCallback()
    model = TinyNet(optimizer={"mode": Mode.FAST})
    fit = trainer(tmp_path, [callback, checkpoints], max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    with pytest.warns(UserWarning, match="trust_pickle=True"):
        fit.fit(model, datamodule=RandomDataModule())
    path = Path(checkpoints.last_model_path or checkpoints.best_model_path).with_suffix(".json")
    assert callback.exported == [str(path)]
    assert json.loads(path.read_text())["properties"]["mlm:hyperparameters"]["optimizer.mode"] == "FAST"

    refusing = MLMExportCallback(trust_pickle=False)
    fit = trainer(tmp_path / "again", [refusing, ModelCheckpoint(dirpath=tmp_path / "again")], max_epochs=1,
                  limit_train_batches=1, limit_val_batches=0)  # fmt: skip
    with pytest.raises(UntrustedPickleError):
        fit.fit(TinyNet(optimizer={"mode": Mode.FAST}), datamodule=RandomDataModule())


def test_export_option_typo_fails_in_init_before_training() -> None:
    with pytest.raises(ConfigurationError, match="bbxo") as excinfo:
        MLMExportCallback(bbxo=[0, 0, 1, 1])
    assert "bbox" in excinfo.value.hint
    MLMExportCallback(dataset_hrefs={"train": "https://example.org/d"}, container="ghcr.io/o/m:1")  # known names


def test_on_checkpoint_versions_link_and_follow_rotation(tmp_path: Path) -> None:
    # Keeps the two newest checkpoints: epochs 0 and 1 rotate out as 2 and 3 arrive.
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=2, monitor="step", mode="max")
    callback = MLMExportCallback(on="checkpoint", version_template="e{epoch}s{step}", deprecate=True)
    run_fit(
        trainer(tmp_path, [callback, checkpoints], max_epochs=4, limit_train_batches=1, limit_val_batches=0),
        TinyNet(),
        RandomDataModule(),
    )
    items = sorted((tmp_path / "ckpt").glob("epoch=*.json"))
    assert [p.name for p in items] == ["epoch=2-step=3.json", "epoch=3-step=4.json"]
    older, newer = (json.loads(p.read_text()) for p in items)
    assert older["properties"]["version"] == "e2s3" and newer["properties"]["version"] == "e3s4"
    assert older["properties"]["deprecated"] is True and "deprecated" not in newer["properties"]
    rels = {link["rel"]: link["href"] for link in older["links"] if link["rel"].endswith("-version")}
    assert rels == {"successor-version": "./epoch=3-step=4.json", "latest-version": "./epoch=3-step=4.json"}
    rels = {link["rel"]: link["href"] for link in newer["links"] if link["rel"].endswith("-version")}
    assert rels == {"predecessor-version": "./epoch=2-step=3.json"}  # epoch 1's Item is gone: no link to it
    for path in items:
        report = validate_item(path)
        assert report.valid, report.problems
        assert "https://stac-extensions.github.io/version/v1.2.0/schema.json" in report.schemas


def test_partitioned_weights_are_gathered_into_a_full_copy() -> None:
    from mlm_export.integrations.lightning import gathered_module

    full = TinyNet()
    partitioned = TinyNet()
    partitioned.net[0].weight = nn.Parameter(torch.empty(0))  # what a ZeRO-3 rank holds of a sharded parameter
    strategy = SimpleNamespace(lightning_module_state_dict=full.state_dict)
    module = gathered_module(SimpleNamespace(is_global_zero=True, strategy=strategy), partitioned)
    assert module is not partitioned and partitioned.net[0].weight.numel() == 0  # the trained module is untouched
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), full.state_dict().values(), strict=True))
    same = gathered_module(SimpleNamespace(is_global_zero=True, strategy=strategy), full)
    assert same is full  # nothing sharded: no copy
