"""Embedding outputs and feature extractors get an ``embedding`` axis and no class task (issue 23, point 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mlm_export import export_item, inspect_model, save_item, validate_item  # noqa: E402
from mlm_export.tensors import is_embedding_name  # noqa: E402

COMMON = {"bbox": [0, 0, 1, 1], "datetime": "2020-01-01T00:00:00Z", "value_scaling": "none", "resize_type": "none"}


class LogitsAndEmbedding(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Linear(8, 16)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.features(x)
        return {"logits": self.head(embedding), "embedding": embedding}


class Headless(torch.nn.Module):
    """A backbone whose classifier was removed the timm way (``num_classes=0``, ``head`` an Identity)."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = 0
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 24, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1))
        self.head = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


def _outputs(document: dict) -> dict[str, dict]:
    return {o["name"]: o for o in document["properties"]["mlm:output"]}


def _saved(item: object, path: Path) -> dict:
    saved = save_item(item, path)
    assert validate_item(saved).valid
    return json.loads(saved.read_text())


def test_an_embedding_output_is_no_class_output(tmp_path: Path) -> None:
    inferred = _saved(export_item(LogitsAndEmbedding(), input_shape=[-1, 8], artifact_dir=tmp_path / "a", **COMMON),
                      tmp_path / "a" / "item.json")  # fmt: skip
    outputs = _outputs(inferred)
    assert outputs["logits"]["result"]["dim_order"] == ["batch", "class"]
    assert outputs["logits"]["tasks"] == ["classification"]
    assert outputs["embedding"]["result"] == {"shape": [-1, 16], "dim_order": ["batch", "embedding"],
                                              "data_type": "float32"}  # fmt: skip
    assert outputs["embedding"]["tasks"] == []
    assert inferred["properties"]["mlm:tasks"] == ["classification"]
    # Classes given for the model go to the logits only (5), never to the 16-wide embedding.
    names = ["a", "b", "c", "d", "e"]
    given = export_item(LogitsAndEmbedding(), input_shape=[-1, 8], artifact_dir=tmp_path / "b",
                        tasks=["classification"], classes=names, **COMMON)  # fmt: skip
    outputs = _outputs(_saved(given, tmp_path / "b" / "item.json"))
    assert [c["name"] for c in outputs["logits"]["classification:classes"]] == names
    assert "classification:classes" not in outputs["embedding"]
    assert outputs["embedding"]["tasks"] == []


def test_a_model_without_a_head_has_no_task_unless_given(tmp_path: Path) -> None:
    item = export_item(Headless(), input_shape=[-1, 3, 32, 32], artifact_dir=tmp_path / "a", **COMMON)
    document = _saved(item, tmp_path / "a" / "item.json")
    (output,) = document["properties"]["mlm:output"]
    assert output["result"]["dim_order"] == ["batch", "embedding"]
    assert output["tasks"] == [] and document["properties"]["mlm:tasks"] == []
    notes = inspect_model(Headless(), input_shape=[-1, 3, 32, 32]).notes
    assert any(n.startswith("No task was inferred: output(s) 'output' are embeddings") for n in notes)
    given = export_item(Headless(), input_shape=[-1, 3, 32, 32], artifact_dir=tmp_path / "b",
                        tasks=["similarity-search"], **COMMON)  # fmt: skip
    document = _saved(given, tmp_path / "b" / "item.json")
    assert document["properties"]["mlm:output"][0]["tasks"] == ["similarity-search"]
    assert document["properties"]["mlm:tasks"] == ["similarity-search"]


def test_timm_vit_feature_extractor_is_no_classifier() -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", num_classes=0, pretrained=False)
    described = inspect_model(model, input_shape=[-1, 3, 224, 224], probe_dynamic=False)
    (output,) = described.outputs
    assert (output.shape[1:], output.dim_order, output.tasks) == ((model.num_features,), ("batch", "embedding"), ())
    assert described.tasks == ()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("embedding", True), ("image_features", True), ("last_hidden_state", True), ("feats", True),
     ("logits", False), ("output", False), ("featurewise_scale", False), ("mask", False)],
)  # fmt: skip
def test_embedding_names(name: str, expected: bool) -> None:
    assert is_embedding_name(name) is expected
