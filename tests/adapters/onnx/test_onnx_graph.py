"""adapters/onnx/graph.py: import hygiene, graphs built with onnx.helper, external data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx_models import (
    big_external_model,
    initializer_elements,
    linear_model,
    multi_io_model,
    onnxruntime_datasets,
    save_with_external_data,
    sequence_output_model,
)
from onnx_truth import (
    REPO,
    _quiet_extent,  # noqa: F401 - autouse fixture: registered by importing it
    assert_assets_hashed,
    assert_valid,
    initializer_bytes,
    item_inputs,
    item_outputs,
    ort_declared_inputs,
    ort_truth,
)

from mlm_export.adapters import onnx as adapter
from mlm_export.api import export_item
from mlm_export.errors import (
    ArtifactLoadError,
)


def test_adapter_import_loads_no_framework() -> None:
    code = (
        "import sys, mlm_export, mlm_export.adapters; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules)); "
        "import mlm_export.adapters.onnx; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    # The registry imports no framework; the ONNX adapter package imports onnx and onnxruntime but not torch.
    assert result.stdout.split("\n")[:2] == ["[]", "['onnx', 'onnxruntime']"]


def test_can_describe() -> None:
    assert adapter.can_describe("model.onnx")
    assert adapter.can_describe(Path("MODEL.ONNX"))
    assert not adapter.can_describe("model.pt")
    assert adapter.can_describe(linear_model())
    assert not adapter.can_describe(object())


def test_multi_input_output_graph(tmp_path: Path) -> None:
    model = multi_io_model()
    path = tmp_path / "multi.onnx"
    onnx.save(model, str(path))
    before = path.read_bytes()

    item = export_item(path, validate=False)

    assert path.read_bytes() == before  # the user's file is never rewritten
    assert item_inputs(item) == {
        "image": (ort_declared_inputs(path)["image"], "float32"),
        "mask": (ort_declared_inputs(path)["mask"], "other"),
        "ids": (ort_declared_inputs(path)["ids"], "int64"),
    }
    truth = ort_truth(
        path,
        {"image": (1, 3, 64, 64), "mask": (1, 1, 64, 64), "ids": (1, 4)},
        {"image": (2, 3, 40, 72), "mask": (2, 1, 40, 72), "ids": (2, 4)},
    )
    assert item_outputs(item) == {name: (shape, dtype) for name, (shape, dtype) in truth.items()}
    assert truth["positive"][1] == "other" and truth["scores"][1] == "float16"
    inputs = {i["name"]: i for i in item.properties["mlm:input"]}
    assert "bool" in inputs["mask"]["description"]
    assert "batch=N" in inputs["image"]["description"] and "height=H" in inputs["image"]["description"]

    props = item.properties
    assert props["mlm:total_parameters"] == initializer_elements(model)
    assert props["mlm:memory_size"] == initializer_bytes(model)
    assert props["mlm:framework"] == "ONNX"
    assert props["mlm:framework_version"] == ort.__version__
    assert "mlm:accelerator" not in props  # an ONNX file is not bound to the provider of the dry-run
    hyper = props["mlm:hyperparameters"]
    assert hyper["onnx.opset"] == {"ai.onnx": 17}
    assert hyper["onnx.ir_version"] == model.ir_version
    assert hyper["onnx.producer_name"] == "mlm-export-tests"
    assert hyper["onnx.metadata_props"] == {"author": "tests", "mean": "0.5"}
    assert model.doc_string in props["description"]
    asset = item.assets["model"]
    assert asset.roles == ["mlm:model", "mlm:compiled"]
    assert asset.extra_fields["mlm:artifact_type"] == "onnx"
    assert asset.media_type == "application/octet-stream; framework=onnx"
    assert_assets_hashed(item)
    assert_valid(item)


def test_static_description_uses_shape_inference(tmp_path: Path) -> None:
    path = tmp_path / "multi.onnx"
    onnx.save(multi_io_model(), str(path))

    described = adapter.describe_static(path)

    outputs = {o.name: (list(o.shape), o.data_type) for o in described.outputs}
    truth = ort_truth(path, {"image": (1, 3, 8, 8), "mask": (1, 1, 8, 8), "ids": (1, 4)})
    # the graph declares every output dim unknown; shape inference recovers the fixed ones
    assert outputs["scores"] == ([-1, truth["scores"][0][1]], "float16")
    assert outputs["segmentation"] == ([-1, truth["segmentation"][0][1], -1, -1], "float32")
    assert described.framework_version == onnx.__version__
    assert described.accelerator is None


def test_sequence_output_is_other(tmp_path: Path) -> None:
    path = tmp_path / "sequence.onnx"
    onnx.save(sequence_output_model(), str(path))

    item = export_item(path, validate=False)

    truth = ort_truth(path, {"x": (1, 3)}, {"x": (2, 3)})
    assert item_outputs(item) == truth
    assert item_outputs(item)["pieces"] == ([2], "other")
    descriptions = {o["name"]: o["description"] for o in item.properties["mlm:output"]}
    assert "seq(tensor(float32))" in descriptions["pieces"]
    assert_valid(item)


@pytest.mark.parametrize("path", onnxruntime_datasets() or [None], ids=lambda p: p.name if p else "none")
def test_onnxruntime_bundled_models(path: Path | None) -> None:
    if path is None:
        pytest.skip("the installed onnxruntime ships no .onnx files")
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        with pytest.raises(ArtifactLoadError) as info:
            export_item(path, validate=False)
        assert str(exc) in str(info.value) and str(path) in str(info.value)
        return

    item = export_item(path, validate=False)

    declared = ort_declared_inputs(path)
    session_inputs = {i.name: i for i in ort.InferenceSession(str(path)).get_inputs()}
    assert {k: v[0] for k, v in item_inputs(item).items()} == declared
    truth = ort_truth(path, {name: tuple(shape) for name, shape in declared.items()})
    assert item_outputs(item) == truth
    assert set(session_inputs) == set(item_inputs(item))
    assert item.properties["mlm:total_parameters"] == initializer_elements(onnx.load(str(path)))
    assert_assets_hashed(item)
    assert_valid(item)


def test_external_data_single_file(tmp_path: Path) -> None:
    model = linear_model(6, 3)
    path = save_with_external_data(model, tmp_path / "linear.onnx")

    item = export_item(path, validate=False)

    assert sorted(item.assets) == ["model", "model-external-data"]
    data = item.assets["model-external-data"]
    assert Path(data.href) == tmp_path / "linear.onnx.data"
    assert data.roles == ["mlm:weights", "weights"]
    assert "mlm:artifact_type" not in data.extra_fields
    assert item.properties["mlm:total_parameters"] == initializer_elements(model) == 6 * 3 + 3
    assert item.properties["mlm:memory_size"] == initializer_bytes(model) == (6 * 3 + 3) * 4
    truth = ort_truth(path, {"x": (1, 6)}, {"x": (3, 6)})
    assert item_outputs(item) == truth
    assert item_inputs(item) == {"x": ([-1, 6], "float32")}
    assert_assets_hashed(item)
    assert_valid(item)


def test_external_data_one_file_per_tensor(tmp_path: Path) -> None:
    model = linear_model(4, 2)
    path = save_with_external_data(model, tmp_path / "linear.onnx", one_file=False)

    item = export_item(path, validate=False)

    data_assets = {k: Path(a.href).name for k, a in item.assets.items() if k != "model"}
    assert sorted(data_assets.values()) == ["W", "b"]
    assert len(set(data_assets)) == 2 and all(k.startswith("model-external-data") for k in data_assets)
    assert item.properties["mlm:total_parameters"] == initializer_elements(model)
    assert_assets_hashed(item)
    assert_valid(item)


def test_symlinked_external_data_like_the_hugging_face_cache(tmp_path: Path) -> None:
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshot"
    blobs.mkdir()
    snapshot.mkdir()
    model = linear_model()
    save_with_external_data(model, blobs / "linear.onnx")
    try:
        (snapshot / "linear.onnx").symlink_to(blobs / "linear.onnx")
        (snapshot / "linear.onnx.data").symlink_to(blobs / "linear.onnx.data")
    except OSError:
        pytest.skip("symbolic links are not available")
    path = snapshot / "linear.onnx"

    item = export_item(path, validate=False)

    assert item_outputs(item) == ort_truth(path, {"x": (1, 4)}, {"x": (2, 4)})
    assert item.properties["mlm:total_parameters"] == initializer_elements(model)
    assert_assets_hashed(item)
    assert_valid(item)


def test_describe_static_counts_external_weights_without_reading_them(tmp_path: Path) -> None:
    path = big_external_model(tmp_path, 8)
    header = onnx.load(str(path), load_external_data=False)
    elements = initializer_elements(header)

    described = adapter.describe_static(path)

    assert described.total_parameters == elements == 8 * 1024 * 1024 // 4
    assert described.memory_size == elements * 4
    assert [Path(a.path).name for a in described.artifacts] == ["big.onnx", "big.onnx.data"]
