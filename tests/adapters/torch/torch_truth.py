"""Ground truth and cases for the PyTorch adapter tests (own forward passes, hashlib, os.path.getsize)."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning
import pystac
import pytest
import safetensors.torch
import torch
import torch_models as tm
from torch import nn

from mlm_export import validate_item

REPO = Path(__file__).resolve().parents[3]

logging.getLogger("torch.__trace").propagate = False

MLM_TYPES = {
    torch.float16: "float16", torch.float32: "float32", torch.float64: "float64",
    torch.int8: "int8", torch.int16: "int16", torch.int32: "int32", torch.int64: "int64", torch.uint8: "uint8",
    torch.complex64: "cfloat32", torch.complex128: "cfloat64",
}  # fmt: skip

FILE_KINDS = ("state_dict", "safetensors", "torchscript", "pt2", "checkpoint")


def sha256_multihash(path: str | os.PathLike[str]) -> str:
    """The expected file:checksum: "1220" + sha2-256 hex digest."""
    return "1220" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def param_count(model: nn.Module) -> int:
    """Parameters counted the plain way (shared ones once)."""
    return sum(p.numel() for p in model.parameters())


def flatten_outputs(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Name -> tensor of a forward's result, named as the MLM item should name them."""
    if isinstance(value, torch.Tensor):
        return {prefix or "output": value}
    result: dict[str, torch.Tensor] = {}
    if isinstance(value, Mapping):
        for key, entry in value.items():
            result.update(flatten_outputs(entry, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, (tuple, list)):
        for index, entry in enumerate(value):
            result.update(flatten_outputs(entry, f"{prefix}.{index}" if prefix else f"output_{index}"))
    return result


def run(model: Any, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """The test's own forward pass (eval, no grad), flattened."""
    switch = isinstance(model, nn.Module) and not isinstance(model, torch.fx.GraphModule)  # an unlifted .pt2
    was_training = switch and model.training
    if switch:
        model.eval()
    with torch.no_grad():
        out = model(*inputs)
    if was_training:
        model.train()
    return flatten_outputs(out)


def expected_io(
    model: Any,
    base: tuple[torch.Tensor, ...],
    alt: tuple[torch.Tensor, ...],
    dynamic: tuple[tuple[int, ...], ...],
) -> tuple[list[list[int]], dict[str, tuple[list[int], str]]]:
    """Input shapes (-1 on the dynamic axes) and output name -> (shape with -1 where it changed, MLM dtype)."""
    inputs = [
        [-1 if axis in dyn else size for axis, size in enumerate(t.shape)] for t, dyn in zip(base, dynamic, strict=True)
    ]
    first, second = run(model, base), run(model, alt)
    outputs = {}
    for name, tensor in first.items():
        other = second[name]
        shape = [-1 if a != b else a for a, b in zip(tensor.shape, other.shape, strict=True)] or [1]
        outputs[name] = (shape, MLM_TYPES.get(tensor.dtype, "other"))
    return inputs, outputs


def check_item(
    item: pystac.Item,
    *,
    params: int,
    inputs: list[list[int]],
    input_types: list[str],
    outputs: dict[str, tuple[list[int], str]],
    artifact: Path,
    names: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Assert the item's measured fields against the test's own values; return the item dict."""
    data = item.to_dict()
    props = data["properties"]
    assert props["mlm:total_parameters"] == params
    assert props["mlm:framework"] == "PyTorch"
    assert props["mlm:framework_version"].startswith(torch.__version__.split("+")[0])
    assert [i["input"]["shape"] for i in props["mlm:input"]] == inputs
    assert [i["input"]["data_type"] for i in props["mlm:input"]] == input_types
    if names is not None:
        assert tuple(i["name"] for i in props["mlm:input"]) == names
    got = {o["name"]: (o["result"]["shape"], o["result"]["data_type"]) for o in props["mlm:output"]}
    assert got == outputs
    asset = data["assets"]["model"]
    assert Path(asset["href"]).resolve() == artifact.resolve()
    assert asset["file:size"] == os.path.getsize(artifact)
    assert asset["file:checksum"] == sha256_multihash(artifact)
    assert "mlm:model" in asset["roles"]
    report = validate_item(item)
    assert report.valid, report.problems
    return data


def images(channels: int, size: int) -> Callable[[int, int], tuple[torch.Tensor, ...]]:
    """Inputs factory for one image input (batch, grow) -> ([B, C, size + grow, size + grow],)."""

    def make(batch: int, grow: int) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(batch * 1000 + grow)
        return (torch.randn(batch, channels, size + grow, size + grow, generator=generator),)

    return make


def two_inputs(batch: int, grow: int) -> tuple[torch.Tensor, ...]:
    """TwoInputNet inputs: image [B, 3, 32+g, 32+g] and side features [B, 4]."""
    return torch.randn(batch, 3, 32 + grow, 32 + grow), torch.randn(batch, 4)


def series(batch: int, grow: int) -> tuple[torch.Tensor, ...]:
    """SequenceLSTM input [B, 8+g, 5]."""
    return (torch.randn(batch, 8 + grow, 5),)


def tabular(batch: int, grow: int) -> tuple[torch.Tensor, ...]:
    """TinyMLP input [B, 6]."""
    return (torch.randn(batch, 6),)


def tokens(batch: int, grow: int) -> tuple[torch.Tensor, ...]:
    """TiedEmbeddingLM input [B, 16+g] int64 below 50 (the token axis is probed)."""
    return (torch.randint(0, 50, (batch, 16 + grow)),)


@dataclass(frozen=True)
class Case:
    """A model family and what the test knows about it."""

    name: str
    factory: Callable[..., nn.Module]
    kwargs: dict[str, Any]
    make_inputs: Callable[[int, int], tuple[torch.Tensor, ...]]
    dynamic: tuple[tuple[int, ...], ...]
    names: tuple[str, ...] = ("input",)
    pt2_dynamic: tuple[tuple[int, ...], ...] | None = None
    pass_example: bool = False
    input_shape: Any = None
    note: str | None = None
    trace: bool = False
    grow: int = 32
    extra: dict[str, Any] = field(default_factory=dict)

    def export_kwargs(self) -> dict[str, Any]:
        """What a user passes to export_item for this model."""
        kwargs: dict[str, Any] = dict(self.extra)
        if self.pass_example:
            kwargs["example_input"] = self.make_inputs(1, 0)
        if self.input_shape is not None:
            kwargs["input_shape"] = self.input_shape
        return kwargs


IMAGE_DYN = ((0, 2, 3),)

CASES = [
    Case("torchvision_resnet18", tm.torchvision_resnet18, {"num_classes": 7}, images(3, 64), IMAGE_DYN,
         note="first Conv2d layer ('conv1', in_channels=3)"),
    Case("torchgeo_resnet18", tm.torchgeo_resnet18, {"in_chans": 13, "num_classes": 10}, images(13, 64), IMAGE_DYN,
         note="in_channels=13"),
    Case("torchgeo_vit", tm.torchgeo_vit_small, {"in_chans": 5, "num_classes": 10}, images(5, 224), ((0,),),
         note="declared image size 224x224", grow=0),
    Case("smp_unet", tm.smp_unet, {"in_channels": 3, "classes": 2}, images(3, 64), IMAGE_DYN,
         input_shape=[-1, 3, -1, -1]),
    Case("strict_unet", tm.StrictUNet, {"in_channels": 3, "classes": 2}, images(3, 64), IMAGE_DYN,
         note="Height/width must be multiples of 32"),
    Case("timm_resnet18", tm.timm_resnet18, {"in_chans": 4, "num_classes": 6}, images(4, 64), IMAGE_DYN),
    Case("lstm", tm.SequenceLSTM, {"n_features": 5, "num_classes": 3}, series, ((0, 1),), names=("series",),
         pt2_dynamic=((0,),), note="first LSTM layer"),
    Case("mlp", tm.TinyMLP, {"in_features": 6, "num_classes": 3}, tabular, ((0,),), names=("features",),
         note="first Linear layer", grow=0),
    Case("dict_output", tm.DictOutputNet, {"in_channels": 3}, images(3, 64), IMAGE_DYN),
    Case("tuple_output", tm.TupleOutputNet, {"in_channels": 2}, images(2, 64), IMAGE_DYN),
    Case("two_inputs", tm.TwoInputNet, {}, two_inputs, ((0, 2, 3), (0,)), names=("image", "side"),
         pass_example=True),
    Case("tied_embedding", tm.TiedEmbeddingLM, {"vocab": 50, "dim": 8}, tokens, ((0, 1),), names=("tokens",),
         note="Embedding layer"),
]  # fmt: skip

CASE_IDS = [c.name for c in CASES]


@pytest.fixture(scope="session")
def models() -> dict[str, nn.Module]:
    """One seeded model per case, built once."""
    built = {}
    for case in CASES:
        torch.manual_seed(0)
        built[case.name] = case.factory(**case.kwargs)
    return built


@pytest.fixture(scope="session")
def case_files(tmp_path_factory: pytest.TempPathFactory, models: dict[str, nn.Module]) -> Callable[[Case, str], Path]:
    """Lazily saved files: (case, kind) -> path, each written once per session."""
    cache: dict[tuple[str, str], Path] = {}

    def get(case: Case, kind: str) -> Path:
        key = (case.name, kind)
        if key not in cache:
            directory = tmp_path_factory.mktemp(f"{case.name}-{kind}")
            cache[key] = save_as(models[case.name], case, kind, directory)
        return cache[key]

    return get


def save_as(model: nn.Module, case: Case, kind: str, directory: Path) -> Path:
    """Save ``model`` the way a user would for each file kind."""
    model.eval()
    if kind == "state_dict":
        path = directory / "weights.pt"
        torch.save(model.state_dict(), path)
    elif kind == "safetensors":
        path = directory / "weights.safetensors"
        safetensors.torch.save_model(model, str(path))  # drops tied duplicates, as users' files do
    elif kind == "torchscript":
        path = directory / "scripted.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if case.trace:
                compiled = torch.jit.trace(model, case.make_inputs(1, 0), strict=False)
            else:
                compiled = torch.jit.script(model)
            torch.jit.save(compiled, str(path))
    elif kind == "pt2":
        path = directory / "program.pt2"
        dynamic = case.pt2_dynamic or case.dynamic
        specs = tuple(dict.fromkeys(axes, torch.export.Dim.AUTO) for axes in dynamic)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # nn.LSTM's _flat_weights notice
            program = torch.export.export(model, case.make_inputs(2, 0), dynamic_shapes=specs)
        torch.export.save(program, str(path))
    elif kind == "checkpoint":
        path = directory / "epoch=0-step=1.ckpt"
        torch.save(
            {
                "epoch": 0,
                "global_step": 1,
                "pytorch-lightning_version": lightning.__version__,
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {**case.kwargs, "lr": 0.001},
            },
            path,
        )
    else:
        raise AssertionError(kind)
    return path
