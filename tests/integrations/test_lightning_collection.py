"""MLMExportCallback(collection=...): the Item carries the collection link STAC requires (issue 12, point 22)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
from lightning.pytorch import LightningModule, Trainer  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from mlm_export import validate_item  # noqa: E402
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


def test_callback_collection_writes_the_link(tmp_path: Path) -> None:
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
    document = json.loads(path.read_text())
    assert document["collection"] == "models"
    assert {"rel": "collection", "href": "../collection.json", "type": "application/json"} in document["links"]
    assert validate_item(path).valid
