"""First contact with common PyTorch models: traced modules, bfloat16 check, task and axes independent of dtype."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch_models as tm
import torchvision
from torch import nn

from mlm_export import check_item, export_item, inspect_model, save_item
from mlm_export.cli import main


def _traced(module: nn.Module, shape: tuple[int, ...]) -> torch.jit.ScriptModule:
    with pytest.warns(FutureWarning):  # torch.jit.trace is deprecated in torch 2.14 but still the common route
        return torch.jit.trace(module.eval(), torch.rand(*shape))


def test_traced_sequential_exports_with_and_without_example(tmp_path: Path) -> None:
    traced = _traced(nn.Sequential(nn.Conv2d(3, 8, 3)), (1, 3, 16, 16))
    item = export_item(traced, artifact_dir=tmp_path / "a", bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z")
    assert item.properties["mlm:input"][0]["input"]["shape"] == [-1, 3, -1, -1]
    assert item.properties["mlm:output"][0]["result"]["shape"] == [-1, 8, -1, -1]
    item = export_item(
        traced, example_input=torch.rand(2, 3, 20, 20), artifact_dir=tmp_path / "b", bbox=[0, 0, 1, 1],
        datetime="2024-01-01T00:00:00Z",
    )  # fmt: skip
    assert item.properties["mlm:total_parameters"] == 3 * 8 * 9 + 8


def test_traced_torchvision_resnet_inspect_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = torchvision.models.resnet18(num_classes=7)
    traced = _traced(net, (1, 3, 64, 64))
    described = inspect_model(traced, artifact_dir=tmp_path / "art")
    assert described.inputs[0].shape == (-1, 3, -1, -1)
    assert described.outputs[0].shape == (-1, 7)
    assert described.total_parameters == sum(p.numel() for p in net.parameters())
    path = tmp_path / "resnet.pt"
    torch.jit.save(traced, str(path))
    assert main(["inspect", str(path), "--no-probe"]) == 0
    assert "[1, 7]" in capsys.readouterr().out
    out = tmp_path / "item.json"
    code = main(["export", str(path), "--input-shape=-1,3,64,64", "--bbox", "0", "0", "1", "1",
                 "--datetime", "2024-01-01T00:00:00Z", "-o", str(out)])  # fmt: skip
    assert code == 0 and out.is_file()


def test_traced_embedding_model_reads_vocabulary_from_weights(tmp_path: Path) -> None:
    with pytest.warns(FutureWarning):
        traced = torch.jit.trace(tm.TokenClassifier(vocab=50, width=4, classes=3).eval(), torch.randint(0, 50, (1, 16)))
    described = inspect_model(traced, artifact_dir=tmp_path)
    assert described.inputs[0].data_type == "int64"
    assert "below 50" in " ".join(described.notes)


def _two_convs() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))


def test_bfloat16_model_passes_its_own_check(tmp_path: Path) -> None:
    model = _two_convs().to(torch.bfloat16)
    item = export_item(model, artifact_dir=tmp_path, bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z")
    assert item.properties["mlm:input"][0]["input"]["data_type"] == "other"
    path = save_item(item, tmp_path / "item.json")
    report = check_item(path, model_class=lambda: _two_convs().to(torch.bfloat16))
    assert report.ok, report


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_task_inference_does_not_depend_on_dtype(tmp_path: Path, dtype: torch.dtype) -> None:
    described = inspect_model(_two_convs().to(dtype), artifact_dir=tmp_path)
    assert described.tasks == ("semantic-segmentation",)
    assert described.outputs[0].dim_order == ("batch", "class", "height", "width")


def test_pooled_token_classifier_has_a_class_axis(tmp_path: Path) -> None:
    class Tagger(tm.TokenClassifier):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(x))[..., 0]

    pooled = inspect_model(tm.TokenClassifier(), artifact_dir=tmp_path / "c")
    assert pooled.outputs[0].shape == (-1, 5)
    assert pooled.outputs[0].dim_order == ("batch", "class")
    assert pooled.tasks == ("classification",)
    per_token = inspect_model(Tagger(), artifact_dir=tmp_path / "t")
    assert per_token.outputs[0].dim_order == ("batch", "token")
    assert per_token.tasks != ("classification",)
