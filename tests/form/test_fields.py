"""Form values -> export_item's keyword arguments, and problems -> the form field they are shown next to."""

from __future__ import annotations

import pytest

from mlm_export.errors import ConfigurationError, FieldError, UntrustedPickleError
from mlm_export.form.fields import (
    export_arguments,
    field_of_error,
    field_of_pointer,
    measure_arguments,
    spdx_licenses,
)


def test_empty_fields_give_no_argument() -> None:
    empty = {"name": "", "tasks": [], "bands": [""], "classes": [], "bbox": ["", "", "", ""], "datetime": "",
             "derived_from": [{"href": "", "split": "train"}], "value_scaling": "", "pretrained": None}  # fmt: skip
    assert export_arguments(empty) == {}


def test_every_field_becomes_its_argument() -> None:
    values = {
        "model_class": "pkg.mod:Net", "model_kwargs": '{"classes": 2}', "input_shape": "-1, 4, 64, 64",
        "trust_pickle": True, "name": " Net ", "tasks": ["semantic-segmentation"], "bands": ["B02", " B03 "],
        "value_scaling": [{"type": "z-score", "mean": "1.5", "stddev": 2}], "resize_type": "crop",
        "classes": [{"value": "0", "name": "water", "description": "open water", "color_hint": "#1f77b4"},
                    {"value": 1, "name": "land", "color_hint": ""}],
        "bbox": ["170", "-10", "-170", "10"], "start_datetime": "2020-01-01T00:00:00Z",
        "end_datetime": "2021-01-01T00:00:00Z", "datetime": "ignored when a range is given", "license": "MIT",
        "doi": "10.1/x", "citation": "Me (2024)", "container": "ghcr.io/a/b:1", "pretrained": False,
        "derived_from": [{"href": "https://data.example/train", "split": "train", "title": "train set"}],
    }  # fmt: skip
    assert export_arguments(values) == {
        "model_class": "pkg.mod:Net", "model_kwargs": {"classes": 2}, "input_shape": [-1, 4, 64, 64],
        "trust_pickle": True, "name": "Net", "tasks": ["semantic-segmentation"], "bands": ["B02", "B03"],
        "value_scaling": [{"type": "z-score", "mean": 1.5, "stddev": 2.0}], "resize_type": "crop",
        "classes": [{"value": 0, "name": "water", "description": "open water", "color_hint": "1F77B4"},
                    {"value": 1, "name": "land"}],
        "bbox": [170.0, -10.0, -170.0, 10.0], "start_datetime": "2020-01-01T00:00:00Z",
        "end_datetime": "2021-01-01T00:00:00Z", "license": "MIT", "doi": "10.1/x", "citation": "Me (2024)",
        "container": "ghcr.io/a/b:1", "pretrained": False,
        "links": [{"rel": "derived_from", "href": "https://data.example/train", "title": "train set",
                   "ml-aoi:split": "train"}],
    }  # fmt: skip


def test_several_image_inputs_give_mappings_by_input_name() -> None:
    values = {
        "bands": {"optical": ["red", " green ", "blue"], "sar": ["VV", "VH"], "empty": [" "]},
        "value_scaling": {"optical": [{"type": "scale", "value": "0.5"}], "sar": []},
        "source_code": " https://github.com/org/repo ",
    }  # fmt: skip
    assert export_arguments(values) == {
        "source_code": "https://github.com/org/repo",
        "bands": {"optical": ["red", "green", "blue"], "sar": ["VV", "VH"]},
        "value_scaling": {"optical": [{"type": "scale", "value": 0.5}], "sar": []},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("values", "field"),
    [({"model_kwargs": "{nope"}, "model_kwargs"), ({"value_scaling": {"sar": "none"}}, "value_scaling"),
     ({"bands": {"sar": "VV"}}, "bands"), ({"model_kwargs": "[1]"}, "model_kwargs"),
     ({"input_shape": "a,b"}, "input_shape"), ({"bbox": ["1", "x", "3", "4"]}, "bbox"), ({"bbox": ["1"]}, "bbox"),
     ({"value_scaling": [{"type": "bogus"}]}, "value_scaling"), ({"classes": [{"value": "one"}]}, "classes")],
)  # fmt: skip
def test_values_that_cannot_become_arguments_name_their_field(values: dict, field: str) -> None:
    with pytest.raises(FieldError) as caught:
        export_arguments(values)
    assert caught.value.field == field and field_of_error(caught.value) == field


def test_measure_arguments_are_only_the_measuring_ones() -> None:
    assert measure_arguments({"model_class": "a:B", "name": "x", "trust_pickle": False}) == {"model_class": "a:B"}


@pytest.mark.parametrize(
    ("pointer", "field"),
    [("/bbox", "bbox"), ("/properties/mlm:input/0/bands/2", "bands"), ("/properties/license", "license"),
     ("/properties/mlm:input/0/value_scaling/0/type", "value_scaling"), ("/properties/start_datetime", "time"),
     ("/properties/mlm:output/0/classification:classes/1/name", "classes"), ("/links/3/href", "derived_from"),
     ("/properties/sci:doi", "doi"), ("/properties/mlm:input/0/input/shape", "model"), ("/whatever", "general")],
)  # fmt: skip
def test_problem_pointers_map_to_fields(pointer: str, field: str) -> None:
    assert field_of_pointer(pointer) == field


def test_errors_map_to_the_argument_they_name() -> None:
    assert field_of_error(ConfigurationError("classes= has 1 entries but output 'x' has 4 classes.")) == "classes"
    assert field_of_error(ConfigurationError("start_datetime= is after end_datetime=.")) == "time"
    # a dotted name is not an argument: the pickle error names torch.nn.modules.container.Sequential
    pickle = UntrustedPickleError("it holds torch.nn.modules.container.Sequential", hint="Pass trust_pickle=True")
    assert field_of_error(pickle) == "trust_pickle"
    assert field_of_error(ConfigurationError("Something else.")) == "general"


def test_the_license_list_is_spdx() -> None:
    licenses = spdx_licenses()
    assert {"MIT", "Apache-2.0", "CC-BY-4.0"} <= set(licenses) and len(licenses) > 500


def test_an_empty_class_value_is_the_rows_position() -> None:
    rows = [{"value": "", "name": "water"}, {"value": None, "name": "land"}, {"value": "7", "name": "cloud"}]
    assert export_arguments({"classes": rows})["classes"] == [
        {"value": 0, "name": "water"}, {"value": 1, "name": "land"}, {"value": 7, "name": "cloud"},
    ]  # fmt: skip
