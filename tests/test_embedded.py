"""embedded.py: the one object every format embeds, and reading it back (both of its forms)."""

from __future__ import annotations

import json

import pytest

from mlm_export import __version__, embedded


def test_payload_keeps_the_caller_fields_and_adds_name_architecture_generator() -> None:
    metadata = {"tasks": ["classification"], "license": "MIT", "hyperparameters": {"lr": 1}, "resize_type": None}
    written = embedded.payload(metadata, name="resnet", architecture="ResNet")
    assert written == {
        "tasks": ["classification"],
        "license": "MIT",
        "name": "resnet",
        "architecture": "ResNet",
        "generator": f"mlm-export {__version__}",
    }
    assert embedded.payload({"name": "Mine"}, name="resnet", architecture="unknown") == {
        "name": "Mine",
        "generator": f"mlm-export {__version__}",
    }
    text = embedded.encode(written)
    assert text == json.dumps(written, sort_keys=True) and embedded.decode(text, "x") == written


def test_caller_values_reads_both_forms() -> None:
    caller = {
        "name": "m",
        "architecture": "A",
        "generator": "g",
        "bands": ["r"],
        "classes": [{"name": "c", "value": 0}],
    }
    assert embedded.caller_values(caller) == {"name": "m", "bands": ["r"], "classes": [{"name": "c", "value": 0}]}
    description = {
        "name": "m",
        "tasks": [],
        "band_definitions": [{"name": "r", "description": "Red"}],
        "outputs": [{"name": "out"}, {"name": "logits", "classes": [{"name": "w", "value": 1}]}],
    }
    assert embedded.caller_values(description) == {
        "name": "m",
        "bands": [{"name": "r", "description": "Red"}],
        "classes": [{"name": "w", "value": 1}],
    }


@pytest.mark.parametrize(("text", "match"), [("{not json", "not JSON"), ("[1, 2]", "not a JSON object")])
def test_invalid_text_is_ignored_with_a_warning(text: str, match: str) -> None:
    with pytest.warns(RuntimeWarning, match=match):
        assert embedded.decode(text, "model.onnx") == {}
    assert embedded.decode(None, "model.onnx") == {} and embedded.decode("", "model.onnx") == {}
