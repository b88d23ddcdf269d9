"""Tests of the PyTorch adapter on real models and real files.

Ground truth is computed here, never copied from the adapter: parameter counts with ``sum(p.numel())``, shapes
and dtypes with the test's own forward passes, checksums with ``hashlib`` and sizes with ``os.path.getsize``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
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

from mlm_export import export_item, validate_item
from mlm_export.errors import (
    ArtifactLoadError,
    ConfigurationError,
    ProbeError,
    UntrustedPickleError,
)

REPO = Path(__file__).resolve().parents[1]
# torch.export logs a structured trace at DEBUG; pytest's log capture would format every record (slow).
logging.getLogger("torch.__trace").propagate = False
MLM_TYPES = {
    torch.float16: "float16", torch.float32: "float32", torch.float64: "float64",
    torch.int8: "int8", torch.int16: "int16", torch.int32: "int32", torch.int64: "int64", torch.uint8: "uint8",
    torch.complex64: "cfloat32", torch.complex128: "cfloat64",
}  # fmt: skip
FILE_KINDS = ("state_dict", "safetensors", "torchscript", "pt2", "checkpoint")


# ----------------------------------------------------------------------------------------------------------------
# Ground truth helpers
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Cases: one per model family, each exported in memory and from every file kind
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# In-memory modules
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_module_in_memory(
    case: Case, models: dict[str, nn.Module], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each model family: measured params, shapes, dtypes, dynamic dims, weights file and notes."""
    model = models[case.name]
    model.train()
    flags = {name: m.training for name, m in model.named_modules()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, outputs = expected_io(model, case.make_inputs(1, 0), case.make_inputs(2, case.grow), case.dynamic)

    item = export_item(model, artifact_dir=tmp_path, **case.export_kwargs())

    artifact = tmp_path / f"{type(model).__name__}.safetensors"
    data = check_item(
        item,
        params=param_count(model),
        inputs=inputs,
        input_types=[MLM_TYPES[t.dtype] for t in case.make_inputs(1, 0)],
        outputs=outputs,
        artifact=artifact,
        names=case.names,
    )
    props = data["properties"]
    assert props["mlm:architecture"] == type(model).__name__  # an architecture name, not a Python path
    assert "mlm:accelerator" not in props  # weights run anywhere; the CPU dry-run does not make them CPU-only
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    assert props["mlm:memory_size"] == param_bytes + buffer_bytes
    asset = data["assets"]["model"]
    assert asset["mlm:artifact_type"] == "safetensors.torch.save_file"
    assert asset["type"] == "application/octet-stream; framework=pytorch; application=safetensors"
    assert asset["roles"] == ["mlm:model", "mlm:weights", "weights"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [artifact.name]  # no temp file left
    # the weights file round-trips into a fresh model of the same class
    fresh = case.factory(**case.kwargs)
    fresh.load_state_dict(safetensors.torch.load_file(str(artifact)))
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, before[key]), key
    # the dry-run left the model as it was: training flags and weights
    assert {name: m.training for name, m in model.named_modules()} == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    if case.note:
        text = caplog.text + " ".join(i.get("description", "") for i in props["mlm:input"])
        assert case.note in text  # notes are warnings, not the Item's description
        assert "description" not in props


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_module_from_file(
    case: Case,
    kind: str,
    models: dict[str, nn.Module],
    case_files: Callable[[Case, str], Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each model family saved as each file kind and described from the file (not copied)."""
    model = models[case.name]
    path = case_files(case, kind)
    kwargs = case.export_kwargs()
    if kind in ("state_dict", "safetensors"):
        kwargs.update(model_class=case.factory, model_kwargs=case.kwargs)
    elif kind == "checkpoint":
        kwargs.update(model_class=case.factory)  # constructor arguments come from hyper_parameters
    if kind == "pt2":
        program = torch.export.load(str(path))
        dynamic = case.pt2_dynamic or case.dynamic
        grow = case.grow if dynamic == case.dynamic else 0
        base, alt = case.make_inputs(2, 0), case.make_inputs(3, grow)
        inputs, outputs = expected_io(program.module(), base, alt, dynamic)
        kwargs.pop("example_input", None)  # the .pt2 carries its own example inputs
    else:
        inputs, outputs = expected_io(model, case.make_inputs(1, 0), case.make_inputs(2, case.grow), case.dynamic)

    item = export_item(path, artifact_dir=tmp_path / "unused", **kwargs)

    data = check_item(
        item,
        params=param_count(model),
        inputs=inputs,
        input_types=[MLM_TYPES[t.dtype] for t in case.make_inputs(1, 0)],
        outputs=outputs,
        artifact=path,
        names=case.names,
    )
    asset = data["assets"]["model"]
    expected = {
        "state_dict": ("torch.save", ["mlm:model", "mlm:weights", "weights"]),
        "safetensors": ("safetensors.torch.save_file", ["mlm:model", "mlm:weights", "weights"]),
        "torchscript": ("torch.jit.save", ["mlm:model", "mlm:compiled"]),
        "pt2": ("torch.export.save", ["mlm:model", "mlm:compiled"]),
        "checkpoint": ("torch.save", ["mlm:model", "mlm:checkpoint", "checkpoint"]),
    }[kind]
    assert (asset["mlm:artifact_type"], asset["roles"]) == expected
    assert not (tmp_path / "unused").exists()  # a file source is published as is, nothing is written
    props = data["properties"]
    if kind == "checkpoint":
        assert props["mlm:hyperparameters"]["lr"] == 0.001
        for key, value in case.kwargs.items():
            assert props["mlm:hyperparameters"][key] == value
        assert "prefix 'model.' was stripped" in caplog.text  # a warning, not Item content
    if kind in ("torchscript", "pt2"):
        assert props["mlm:name"].startswith(type(model).__name__.lower() + "-")


# ----------------------------------------------------------------------------------------------------------------
# Lightning, torchgeo trainers, options
# ----------------------------------------------------------------------------------------------------------------


def fit_one_step(model: lightning.LightningModule, ckpt: Path) -> None:
    """Train one step with a real Trainer and save a real checkpoint."""
    data = torch.utils.data.TensorDataset(torch.randn(8, 7), torch.randint(0, 4, (8,)))
    trainer = lightning.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=ckpt.parent, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(ckpt)


def test_lightning_module_and_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """example_input_array and hparams in memory; a real Trainer checkpoint rebuilt from its hyper_parameters."""
    torch.manual_seed(0)
    model = tm.LitClassifier(in_features=7, num_classes=4, lr=0.05, run_dir=tmp_path)
    ckpt = tmp_path / "last.ckpt"
    fit_one_step(model, ckpt)

    example = model.example_input_array
    inputs, outputs = expected_io(model, (example,), (torch.zeros(3, 7),), ((0,),))
    item = export_item(model, artifact_dir=tmp_path / "art")
    props = check_item(
        item, params=param_count(model), inputs=inputs, input_types=["float32"], outputs=outputs,
        artifact=tmp_path / "art" / "LitClassifier.safetensors",
    )["properties"]  # fmt: skip
    assert props["mlm:hyperparameters"] == {"in_features": 7, "num_classes": 4, "lr": 0.05, "run_dir": str(tmp_path)}
    assert "classification:classes" not in props["mlm:output"][0]  # no placeholder class names
    assert "example_input_array" in caplog.text

    # the hparams hold a pathlib.Path: the checkpoint needs unpickling beyond tensors
    with pytest.raises(UntrustedPickleError, match="pathlib.PosixPath") as info:
        export_item(ckpt, model_class="torch_models:LitClassifier")
    assert str(ckpt) in info.value.message
    item = export_item(ckpt, model_class="torch_models:LitClassifier", trust_pickle=True)
    props = check_item(
        item, params=param_count(model), inputs=inputs, input_types=["float32"], outputs=outputs, artifact=ckpt
    )["properties"]
    assert item.assets["model"].roles == ["mlm:model", "mlm:checkpoint", "checkpoint"]
    assert props["mlm:hyperparameters"]["num_classes"] == 4
    assert props["mlm:hyperparameters"]["run_dir"] == str(tmp_path)

    # without the Path, a real Lightning checkpoint loads with weights_only=True
    plain = tm.LitClassifier(in_features=7, num_classes=4, lr=0.05)
    plain_ckpt = tmp_path / "plain" / "last.ckpt"
    fit_one_step(plain, plain_ckpt)
    item = export_item(plain_ckpt, model_class=tm.LitClassifier)
    check_item(
        item, params=param_count(plain), inputs=inputs, input_types=["float32"], outputs=outputs, artifact=plain_ckpt
    )
    assert item.properties["mlm:hyperparameters"] == {
        "in_features": 7,
        "num_classes": 4,
        "lr": 0.05,
        "model_class": "torch_models:LitClassifier",
    }  # no nulls (run_dir=None is left out); model_class recorded for check --trust-code


def test_torchgeo_classification_task(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A torchgeo trainer: input channels from hparams['in_channels'], classes from num_classes."""
    from torchgeo.trainers import ClassificationTask

    task = ClassificationTask(model="resnet18", weights=None, in_channels=13, num_classes=10)
    base, alt = torch.randn(1, 13, 64, 64), torch.randn(2, 13, 96, 96)
    inputs, outputs = expected_io(task, (base,), (alt,), IMAGE_DYN)
    item = export_item(task, artifact_dir=tmp_path)
    props = check_item(
        item, params=param_count(task), inputs=inputs, input_types=["float32"], outputs=outputs,
        artifact=tmp_path / "ClassificationTask.safetensors",
    )["properties"]  # fmt: skip
    assert "hparams['in_channels']" in caplog.text
    assert props["mlm:hyperparameters"]["num_classes"] == 10
    assert props["mlm:output"][0]["result"]["shape"] == [-1, 10]  # unknown class names are not invented


def test_input_shape_dtype_and_dynamic_pass_through(tmp_path: Path) -> None:
    """input_shape with -1 is kept dynamic; input_dtype int64 makes integer inputs below num_embeddings."""
    torch.manual_seed(0)
    model = tm.TiedEmbeddingLM(vocab=50, dim=8)
    item = export_item(model, input_shape=[-1, 12], input_dtype="int64", artifact_dir=tmp_path)
    out = run(model, (torch.randint(0, 50, (1, 12)),))["output"]
    check_item(
        item, params=param_count(model), inputs=[[-1, 12]], input_types=["int64"],
        outputs={"output": ([-1, *out.shape[1:]], "float32")}, artifact=tmp_path / "TiedEmbeddingLM.safetensors",
    )  # fmt: skip
    # shared (tied) weights are counted once and written under both keys
    unique = {id(p): p for p in [*model.embed.parameters(), *model.proj.parameters(), *model.out.parameters()]}
    assert param_count(model) == sum(p.numel() for p in unique.values())
    stored = safetensors.torch.load_file(str(tmp_path / "TiedEmbeddingLM.safetensors"))
    assert set(stored) == set(model.state_dict())
    assert torch.equal(stored["out.weight"], stored["embed.weight"])


def test_example_input_dict_as_keywords_and_as_one_argument(tmp_path: Path) -> None:
    """A dict example is passed as keywords when forward names them, else as one dict argument."""
    torch.manual_seed(0)
    net = tm.TwoInputNet()
    example = {"side": torch.randn(1, 4), "image": torch.randn(1, 3, 32, 32)}
    item = export_item(net, example_input=example, artifact_dir=tmp_path / "a")
    props = item.properties
    assert [i["name"] for i in props["mlm:input"]] == ["side", "image"]
    assert [i["input"]["shape"] for i in props["mlm:input"]] == [[-1, 4], [-1, 3, -1, -1]]

    dict_net = tm.DictInputNet()
    image = torch.randn(1, 3, 40, 40)
    item = export_item(dict_net, example_input={"image": image}, artifact_dir=tmp_path / "b")
    out = dict_net({"image": image})
    assert item.properties["mlm:input"][0]["name"] == "image"
    assert item.properties["mlm:output"][0]["result"]["shape"] == [-1, out.shape[1], -1, -1]


def test_time_first_lstm_dim_order(tmp_path: Path) -> None:
    """batch_first=False: the inferred input is [time, batch, features] and named so."""
    model = tm.SequenceLSTM(batch_first=False)
    item = export_item(model, artifact_dir=tmp_path)
    spec = item.properties["mlm:input"][0]["input"]
    assert spec["dim_order"] == ["time", "batch", "channel"]
    assert spec["shape"][0] == -1
    assert spec["shape"][2] == 5


@pytest.mark.parametrize(
    ("fmt", "artifact_type", "roles", "media", "suffix"),
    [
        ("torch.save", "torch.save", ["mlm:model", "mlm:weights", "weights"],
         "application/octet-stream; framework=pytorch", ".pt"),
        ("torchscript", "torch.jit.save", ["mlm:model", "mlm:compiled"],
         "application/octet-stream; framework=pytorch; profile=compiled", ".torchscript.pt"),
        ("torch.export", "torch.export.save", ["mlm:model", "mlm:compiled"],
         "application/octet-stream; framework=pytorch; profile=compiled", ".pt2"),
    ],
)  # fmt: skip
def test_artifact_formats(fmt: str, artifact_type: str, roles: list[str], media: str, suffix: str,
                          tmp_path: Path) -> None:  # fmt: skip
    """Each written format reloads and computes what the original model computes, at a new shape too."""
    torch.manual_seed(0)
    model = tm.TupleOutputNet(in_channels=2)
    item = export_item(model, artifact_format=fmt, artifact_dir=tmp_path)
    artifact = tmp_path / f"TupleOutputNet{suffix}"
    asset = item.assets["model"].to_dict()
    assert (asset["mlm:artifact_type"], asset["roles"], asset["type"]) == (artifact_type, roles, media)
    assert asset["file:checksum"] == sha256_multihash(artifact)
    assert asset["file:size"] == os.path.getsize(artifact)
    assert sorted(p.name for p in tmp_path.iterdir()) == [artifact.name]
    assert item.properties["mlm:input"][0]["input"]["shape"] == [-1, 2, -1, -1]
    x = torch.randn(3, 2, 40, 24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if fmt == "torch.save":
            fresh = tm.TupleOutputNet(in_channels=2)
            fresh.load_state_dict(torch.load(artifact, weights_only=True))
            loaded = fresh.eval()
        elif fmt == "torchscript":
            loaded = torch.jit.load(str(artifact))
        else:
            loaded = torch.export.load(str(artifact)).module()
        got = loaded(x)
    want = model.eval()(x)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    assert validate_item(item).valid


def test_traced_fallback_for_unscriptable_module(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A module torch.jit.script cannot compile is traced instead, and the item says so."""

    class Unscriptable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:  # *args is not TorchScript
            return self.fc(x)

    model = Unscriptable()
    with pytest.warns(UserWarning, match="traced"):
        item = export_item(model, artifact_format="torchscript", artifact_dir=tmp_path)
    assert "traced" in caplog.text and "description" not in item.properties
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(tmp_path / "Unscriptable.torchscript.pt"))
    torch.testing.assert_close(loaded(torch.ones(4, 6)), model(torch.ones(4, 6)))


def test_exported_program_and_script_module_in_memory(tmp_path: Path) -> None:
    """ExportedProgram and ScriptModule objects are described and written in their own formats by default."""
    torch.manual_seed(0)
    model = tm.TinyConvNet().eval()
    program = torch.export.export(model, (torch.randn(2, 4, 32, 32),))  # static shapes
    item = export_item(program, artifact_dir=tmp_path / "ep")
    props = item.properties
    out = model(torch.randn(2, 4, 32, 32))
    assert props["mlm:input"][0]["input"]["shape"] == [2, 4, 32, 32]
    assert props["mlm:output"][0]["result"]["shape"] == list(out.shape)
    assert props["mlm:total_parameters"] == param_count(model)
    assert props["mlm:architecture"].endswith("TinyConvNet")
    assert item.assets["model"].extra_fields["mlm:artifact_type"] == "torch.export.save"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model)
    item = export_item(scripted, artifact_dir=tmp_path / "ts")
    props = item.properties
    assert props["mlm:input"][0]["input"]["shape"] == [-1, 4, -1, -1]
    assert props["mlm:total_parameters"] == param_count(model)
    assert props["mlm:name"].startswith("tinyconvnet-")
    assert item.assets["model"].extra_fields["mlm:artifact_type"] == "torch.jit.save"


def test_embed_metadata_in_safetensors(tmp_path: Path) -> None:
    """embed_metadata writes the caller's values and the measured description into the safetensors header."""
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path, embed_metadata=True, name="tiny-mlp")
    with safetensors.safe_open(str(tmp_path / "TinyMLP.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["mlm"]) == {"name": "tiny-mlp"}
    embedded = json.loads(metadata["mlm.description"])
    assert embedded["total_parameters"] == item.properties["mlm:total_parameters"]
    assert embedded["inputs"][0]["shape"] == [-1, 6]


@pytest.mark.parametrize("fmt", ["safetensors", "torch.export"])
def test_embedded_metadata_round_trip(fmt: str, tmp_path: Path, schema_dir: Path) -> None:
    """What the caller said is embedded in the artifact and recovered by export_item on the file alone."""
    torch.manual_seed(0)
    scaling = [{"type": "z-score", "mean": 0.5 * i, "stddev": 2.0} for i in range(4)]
    first = export_item(
        tm.TinyConvNet(),
        input_shape=[-1, 4, 32, 32],
        artifact_format=fmt,
        artifact_dir=tmp_path,
        embed_metadata=True,
        name="conv-demo",
        tasks=["scene-classification"],
        bands=["B02", "B03", "B04", "B08"],
        classes=["water", "forest", "urban", "crop", "bare"],
        value_scaling=scaling,
    )
    path = Path(first.assets["model"].href)
    kwargs = {"model_class": tm.TinyConvNet} if fmt == "safetensors" else {}
    again = export_item(path, input_shape=[-1, 4, 32, 32], **kwargs)
    props, first_props = again.properties, first.properties
    assert props["mlm:name"] == "conv-demo"
    assert props["mlm:tasks"] == ["scene-classification"]
    assert props["mlm:input"][0]["bands"] == ["B02", "B03", "B04", "B08"]
    assert props["mlm:input"][0]["value_scaling"] == scaling
    assert props["mlm:output"][0]["classification:classes"] == first_props["mlm:output"][0]["classification:classes"]
    assert [c["name"] for c in props["mlm:output"][0]["classification:classes"]][:2] == ["water", "forest"]
    assert validate_item(again, schema_dir).valid
    overridden = export_item(path, input_shape=[-1, 4, 32, 32], name="renamed", **kwargs)
    assert overridden.properties["mlm:name"] == "renamed"


def test_onnx_format_is_delegated(tmp_path: Path) -> None:
    """artifact_format='onnx' goes to the ONNX adapter's describe_torch_module."""
    onnx_adapter = pytest.importorskip("mlm_export.adapters.onnx")
    if not hasattr(onnx_adapter, "describe_torch_module"):
        pytest.skip("the ONNX adapter has no describe_torch_module yet")
    model = tm.TinyMLP()
    item = export_item(model, artifact_format="onnx", artifact_dir=tmp_path)  # input inferred here, then delegated
    assert item.properties["mlm:total_parameters"] == param_count(model)
    assert item.properties["mlm:input"][0]["input"]["shape"][1:] == [6]
    assert Path(item.assets["model"].href).suffix == ".onnx"


@pytest.mark.parametrize("fmt", ["safetensors", "torch.save", "torchscript", "torch.export"])
def test_load_and_run_artifact_round_trip(fmt: str, tmp_path: Path) -> None:
    """load_artifact/run_artifact (used by mlm_export.loading) reopen what export_item wrote and rerun it."""
    from mlm_export.adapters import ExportOptions
    from mlm_export.adapters import torch as torch_adapter

    torch.manual_seed(0)
    model = tm.TwoInputNet()
    example = {"image": torch.randn(1, 3, 32, 32), "side": torch.randn(1, 4)}
    item = export_item(model, example_input=example, artifact_format=fmt, artifact_dir=tmp_path)
    asset = item.assets["model"]
    options = ExportOptions(model_class=tm.TwoInputNet)
    loaded = torch_adapter.load_artifact(asset.href, asset.extra_fields["mlm:artifact_type"], options)
    measured = torch_adapter.run_artifact(loaded, [("image", (2, 3, 32, 32), "float32"), ("side", (2, 4), "float32")],
                                          options)  # fmt: skip
    want = model.eval()(torch.randn(2, 3, 32, 32), torch.randn(2, 4))
    assert [(m.name, m.shape, m.data_type) for m in measured] == [("output", tuple(want.shape), "float32")]
    loading = pytest.importorskip("mlm_export.loading")
    report = loading.check_item(item, model_class=tm.TwoInputNet)
    assert report.ok, str(report)


# ----------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------


def test_forward_that_raises(tmp_path: Path) -> None:
    """ProbeError names the shapes and the original exception; nothing is written; flags come back."""
    model = tm.RaisingNet().train()
    with pytest.raises(ProbeError) as info:
        export_item(model, artifact_dir=tmp_path / "art")
    message = str(info.value)
    assert "[1, 6]" in message
    assert "ValueError: boom" in message
    assert isinstance(info.value.__cause__, ValueError)
    assert not (tmp_path / "art").exists() or not any((tmp_path / "art").iterdir())
    assert all(m.training for m in model.modules())


def test_nan_outputs_warn_but_build(tmp_path: Path) -> None:
    """NaN outputs: a RuntimeWarning, and the item is still built and valid."""
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        item = export_item(tm.NaNNet(), artifact_dir=tmp_path)
    assert "NaN or inf" in item.properties["mlm:output"][0]["description"]
    assert validate_item(item).valid


def test_non_tensor_and_bfloat16_outputs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """None/str leaves are left out with a note; bfloat16 is data type 'other' with the real dtype written."""
    item = export_item(tm.MixedOutputNet(), artifact_dir=tmp_path / "a")
    outputs = item.properties["mlm:output"]
    assert [o["name"] for o in outputs] == ["output_0"]
    assert "'output_1'" in caplog.text
    assert "NoneType" in caplog.text

    item = export_item(tm.BFloat16OutputNet(), artifact_dir=tmp_path / "b")
    result = item.properties["mlm:output"][0]
    assert result["result"]["data_type"] == "other"
    assert "torch.bfloat16" in result["description"]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("random.pt", os.urandom(4096), "not a PyTorch checkpoint"),
        ("photo.pt", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(512), "JPEG"),
        ("empty.pth", b"", "empty"),
        ("random.safetensors", os.urandom(512), "safetensors"),
        ("random.pt2", os.urandom(512), "not a PyTorch checkpoint"),
    ],
)
def test_not_a_checkpoint(name: str, content: bytes, match: str, tmp_path: Path) -> None:
    """Files that are no PyTorch file at all: ArtifactLoadError naming the file."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ArtifactLoadError, match=match) as info:
        export_item(path, model_class=tm.TinyMLP, artifact_dir=tmp_path / "art")
    assert str(path) in str(info.value)
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [(torch.randn(3), "holds a Tensor"), ({"epoch": 3, "notes": ["a"]}, "Cannot find a state_dict")],
)
def test_checkpoint_without_weights(content: Any, match: str, tmp_path: Path) -> None:
    """A torch.save file that holds no state_dict: ArtifactLoadError naming the file."""
    path = tmp_path / "thing.pt"
    torch.save(content, path)
    with pytest.raises(ArtifactLoadError, match=match) as info:
        export_item(path, model_class=tm.TinyMLP)
    assert str(path) in str(info.value)


def test_legacy_serialization_and_conv1d_names(tmp_path: Path) -> None:
    """The pre-zip torch.save format loads safely; a Conv1d input is named batch, channel, time."""
    model = tm.TinyMLP()
    path = tmp_path / "legacy.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    item = export_item(path, model_class=tm.TinyMLP)
    assert item.properties["mlm:total_parameters"] == param_count(model)
    assert item.assets["model"].extra_fields["file:checksum"] == sha256_multihash(path)

    conv = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU())
    item = export_item(conv, input_shape=[-1, 4, -1], artifact_dir=tmp_path / "art")
    spec = item.properties["mlm:input"][0]["input"]
    assert spec["dim_order"] == ["batch", "channel", "time"]
    assert spec["shape"] == [-1, 4, -1]


@pytest.mark.parametrize("kind", ["state_dict", "safetensors", "torchscript", "pt2"])
def test_truncated_file(kind: str, tmp_path: Path) -> None:
    """Half a file: ArtifactLoadError naming it, no partial output."""
    case = next(c for c in CASES if c.name == "mlp")
    path = save_as(tm.TinyMLP(), case, kind, tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / f"truncated{path.suffix}"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactLoadError) as info:
        export_item(truncated, model_class=tm.TinyMLP, artifact_dir=tmp_path / "art")
    assert str(truncated) in str(info.value)
    assert not (tmp_path / "art").exists()


def test_pickled_module_refused_then_trusted(tmp_path: Path) -> None:
    """A pickled nn.Module is not unpickled without trust_pickle (the canary proves it), and is with it."""
    marker = tmp_path / "canary-ran.txt"
    path = tmp_path / "full_model.pt"
    torch.save(tm.CanaryModule(marker), path)
    tm.CANARY_RUNS.clear()

    with pytest.raises(UntrustedPickleError) as info:
        export_item(path, artifact_dir=tmp_path / "art")
    assert str(path) in info.value.message
    assert "trust_pickle=True" in info.value.hint
    assert "torch_models.rebuild_canary" in info.value.message
    assert not marker.exists()
    assert tm.CANARY_RUNS == []

    item = export_item(path, trust_pickle=True, artifact_dir=tmp_path / "art")
    assert marker.exists()
    assert [str(marker)] == tm.CANARY_RUNS
    check_item(
        item, params=param_count(tm.TinyMLP()), inputs=[[-1, 6]], input_types=["float32"],
        outputs={"output": ([-1, 3], "float32")}, artifact=path,
    )  # fmt: skip
    assert not (tmp_path / "art").exists()


def test_state_dict_not_fitting_model_class(tmp_path: Path) -> None:
    """Missing and unexpected keys and shape mismatches are listed."""
    path = tmp_path / "conv.pt"
    torch.save(tm.TinyConvNet(in_channels=4).state_dict(), path)
    with pytest.raises(ArtifactLoadError) as info:
        export_item(path, model_class=tm.TinyMLP, artifact_dir=tmp_path / "art")
    message = str(info.value)
    assert str(path) in message
    assert "missing keys" in message
    assert "body.0.weight" in message
    assert "unexpected keys" in message
    assert "features.0.weight" in message

    with pytest.raises(ArtifactLoadError, match=r"shape mismatches.*features\.0\.weight"):
        export_item(path, model_class="torch_models:TinyConvNet", model_kwargs={"in_channels": 3})
    assert not (tmp_path / "art").exists()


def test_missing_model_class_and_input_shape(tmp_path: Path) -> None:
    """A bare state_dict or safetensors file needs model_class; a model without hints needs input_shape."""
    model = tm.TinyMLP()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ConfigurationError, match="model_class"):
        export_item(path)
    st_path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(st_path))
    with pytest.raises(ConfigurationError, match="model_class") as info:
        export_item(st_path)
    assert f"{len(model.state_dict())} tensors" in str(info.value)
    with pytest.raises(ConfigurationError, match="input_shape"):
        export_item(tm.NoLayerNet(), artifact_dir=tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_bad_options(tmp_path: Path) -> None:
    """Unknown artifact format, bad device, bad shapes, bad model_class: ConfigurationError."""
    with pytest.raises(ConfigurationError, match="artifact_format"):
        export_item(tm.TinyMLP(), artifact_format="pickle", artifact_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="device"):
        export_item(tm.TinyMLP(), device="tpu:0", artifact_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="input_shape"):
        export_item(tm.TinyMLP(), input_shape=[1, "six"], artifact_dir=tmp_path)
    path = tmp_path / "w.pt"
    torch.save(tm.TinyMLP().state_dict(), path)
    with pytest.raises(ConfigurationError, match="model_class"):
        export_item(path, model_class="torch_models:NoSuchClass")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    """device='cuda' on a machine without CUDA: a clear ConfigurationError."""
    with pytest.raises(ConfigurationError, match="CUDA is not available") as info:
        export_item(tm.TinyMLP(), device="cuda", artifact_dir=tmp_path)
    assert "device='cpu'" in info.value.hint


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_dry_run(tmp_path: Path) -> None:
    """device='cuda': accelerator cuda, the GPU's name, peak memory, and the model back on its own device."""
    torch.manual_seed(0)
    model = tm.TinyConvNet().train()
    item = export_item(model, device="cuda", artifact_dir=tmp_path / "a")
    props = item.properties
    assert "mlm:accelerator" not in props  # safetensors weights are not bound to the GPU of the dry-run
    tensor_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert props["mlm:memory_size"] >= tensor_bytes
    assert all(t.device.type == "cpu" for t in model.parameters())
    assert all(m.training for m in model.modules())
    out = model.eval()(torch.randn(1, 4, 64, 64))
    assert props["mlm:output"][0]["result"]["shape"] == [-1, out.shape[1]]

    on_gpu = tm.TinyMLP().cuda()
    export_item(on_gpu, device="cpu", artifact_dir=tmp_path / "b")
    assert all(t.device.type == "cuda" for t in on_gpu.parameters())
    item = export_item(on_gpu, device="cuda:0", artifact_dir=tmp_path / "c")
    assert "mlm:accelerator" not in item.properties
    assert validate_item(item).valid


def test_import_does_not_import_torch() -> None:
    """Importing mlm_export and the adapter registry does not import torch; the torch adapter package does."""
    code = (
        "import sys, mlm_export, mlm_export.adapters as r\n"
        "assert r.ADAPTERS_BY_SUFFIX['.safetensors'] == 'mlm_export.adapters.torch'\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import mlm_export.adapters.torch as t\n"
        "assert t.can_describe('model.safetensors') and not t.can_describe(object())\n"
        "assert 'torch' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_missing_torch_is_a_missing_dependency(tmp_path: Path) -> None:
    """Without torch, the registry reports the extra to install instead of an ImportError."""
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from mlm_export.adapters import adapter_for\n"
        "from mlm_export.errors import MissingDependencyError\n"
        "try:\n"
        f"    adapter_for({str(model)!r})\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc.hint)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pip install 'mlm-export[torch]'"
