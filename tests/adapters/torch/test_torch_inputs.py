"""adapters/torch/inputs.py, rebuild.py: Lightning, torchgeo trainers and the measuring options."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import lightning
import pytest
import safetensors.torch
import torch
import torch_models as tm
from torch import nn
from torch_truth import IMAGE_DYN, check_item, expected_io, param_count, run, sha256_multihash

from mlm_export import export_item, validate_item
from mlm_export.errors import (
    UntrustedPickleError,
)


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
    hyper = {k: v for k, v in props["mlm:hyperparameters"].items() if not k.startswith("source_code.")}  # git: varies
    # model_class is recorded (an importable class); its hparams hold a Path, no JSON kwargs (issue 23, point 1)
    recipe = {"model_class": "torch_models:LitClassifier"}
    assert hyper == {"in_features": 7, "num_classes": 4, "lr": 0.05, "run_dir": str(tmp_path), **recipe}
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
    hyper = {k: v for k, v in item.properties["mlm:hyperparameters"].items() if not k.startswith("source_code.")}
    assert hyper == {
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
    """input_shape with -1 is kept dynamic, 12 is where the token probe starts; int64 ids below num_embeddings."""
    torch.manual_seed(0)
    model = tm.TiedEmbeddingLM(vocab=50, dim=8)
    item = export_item(model, input_shape=[-1, 12], input_dtype="int64", artifact_dir=tmp_path)
    out = run(model, (torch.randint(0, 50, (1, 12)),))["output"]
    check_item(
        item, params=param_count(model), inputs=[[-1, -1]], input_types=["int64"],
        outputs={"output": ([-1, -1, *out.shape[2:]], "float32")}, artifact=tmp_path / "TiedEmbeddingLM.safetensors",
    )  # fmt: skip
    # shared (tied) weights are counted once and written once (safetensors.torch.save_model)
    unique = {id(p): p for p in [*model.embed.parameters(), *model.proj.parameters(), *model.out.parameters()]}
    assert param_count(model) == sum(p.numel() for p in unique.values())
    stored = safetensors.torch.load_file(str(tmp_path / "TiedEmbeddingLM.safetensors"))
    assert set(stored) == set(model.state_dict()) - {"out.weight"}
    fresh = tm.TiedEmbeddingLM()
    safetensors.torch.load_model(fresh, str(tmp_path / "TiedEmbeddingLM.safetensors"))
    assert torch.equal(fresh.out.weight, model.embed.weight) and fresh.out.weight is fresh.embed.weight


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
    from mlm_export import __version__

    # the one object every format embeds: the caller's values, the architecture (the module's class), the generator
    assert json.loads(metadata["mlm"]) == {
        "name": "tiny-mlp",
        "architecture": f"{tm.TinyMLP.__module__}.TinyMLP",
        "generator": f"mlm-export {__version__}",
    }
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
    options = ExportOptions.from_flat(model_class=tm.TwoInputNet)
    loaded = torch_adapter.load_artifact(asset.href, asset.extra_fields["mlm:artifact_type"], options)
    measured = torch_adapter.run_artifact(loaded, [("image", (2, 3, 32, 32), "float32"), ("side", (2, 4), "float32")],
                                          options)  # fmt: skip
    want = model.eval()(torch.randn(2, 3, 32, 32), torch.randn(2, 4))
    assert [(m.name, m.shape, m.data_type) for m in measured] == [("output", tuple(want.shape), "float32")]
    loading = pytest.importorskip("mlm_export.loading")
    report = loading.check_item(item, model_class=tm.TwoInputNet)
    assert report.ok, str(report)
