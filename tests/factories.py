"""Builders of framework-free descriptions and items for the foundation tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mlm_export.api import hash_artifacts
from mlm_export.description import Artifact, Band, ClassInfo, InputSpec, ModelDescription, OutputSpec, ValueScaling
from mlm_export.stac.builder import build_item

BANDS = ("B02", "B03", "B04", "B08")


def weights_file(directory: Path, size: int = 4096) -> Path:
    path = directory / "weights.safetensors"
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


def description(directory: Path, **changes: Any) -> ModelDescription:
    """A classification model over 4 Sentinel-2 bands, weights in ``directory``, hashed."""
    path = weights_file(directory)
    base = ModelDescription(
        name="demo-resnet",
        architecture="torchvision.models.resnet.ResNet",
        tasks=("classification",),
        framework="PyTorch",
        framework_version="2.14.1+cu130",
        total_parameters=11_000_000,
        memory_size=44_000_000,
        accelerator="amd64",
        accelerator_constrained=False,
        pretrained=False,
        hyperparameters={"learning rate": 0.01, "num_classes": 3},
        inputs=(
            InputSpec(
                name="image",
                shape=(-1, 4, 64, 64),
                dim_order=("batch", "bands", "height", "width"),
                data_type="float32",
                bands=BANDS,
                value_scaling=(ValueScaling("z-score", mean=0.5, stddev=0.25),),
            ),
        ),
        outputs=(
            OutputSpec(
                name="logits",
                shape=(-1, 3),
                dim_order=("batch", "class"),
                data_type="float32",
                tasks=("classification",),
                classes=(
                    ClassInfo(0, "water", "Water"),
                    ClassInfo(1, "forest", "Forest", "00FF00"),
                    ClassInfo(2, "urban", "Urban"),
                ),
            ),
        ),
        band_definitions=tuple(Band(b) for b in BANDS),
        artifacts=(
            Artifact(
                key="model",
                path=str(path),
                roles=("mlm:model", "mlm:weights", "weights"),
                artifact_type="safetensors.torch.save_file",
                media_type="application/octet-stream; framework=pytorch; application=safetensors",
            ),
        ),
        bbox=(5.0, 45.0, 10.0, 48.0),
        start_datetime="2020-01-01T00:00:00+00:00",
        end_datetime="2021-01-01T00:00:00+00:00",
    )
    return hash_artifacts(base.replace(**changes) if changes else base)


def item_dict(directory: Path, **changes: Any) -> dict[str, Any]:
    """The JSON dict of a valid item built from :func:`description`."""
    item = build_item(description(directory, **changes))
    return copy.deepcopy(item.to_dict(include_self_link=False, transform_hrefs=False))
