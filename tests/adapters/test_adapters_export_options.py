"""ExportOptions: three frozen groups (load / probe / artifact) built from export_item's flat argument names."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from mlm_export import export_item
from mlm_export.adapters import ArtifactOptions, ExportOptions, LoadOptions, ProbeOptions


def test_flat_names_go_to_their_group() -> None:
    options = ExportOptions.from_flat(
        device="cuda:1", trust_pickle=True, input_shape=(1, 3, 8, 8), probe_dynamic=False,
        artifact_dir=Path("out"), overwrite=True,
    )  # fmt: skip
    assert options.load == LoadOptions(device="cuda:1", trust_pickle=True)
    assert options.probe == ProbeOptions(input_shape=(1, 3, 8, 8), probe_dynamic=False)
    assert options.artifact == ArtifactOptions(artifact_dir=Path("out"), overwrite=True)
    assert options.scratch is None


def test_updated_changes_only_what_it_names() -> None:
    before = ExportOptions.from_flat(example_input=[1.0], input_shape=(2, 3), model_kwargs={"width": 4})
    scratch = Path("/tmp")
    after = before.updated(example_input=None, scratch=lambda: scratch)
    assert after.probe == ProbeOptions(input_shape=(2, 3))
    assert after.load is before.load and after.artifact is before.artifact
    assert after.scratch is not None and after.scratch() == scratch
    assert before.probe.example_input == [1.0]  # the original is untouched


def test_groups_are_frozen() -> None:
    options = ExportOptions.from_flat(device="cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.load.device = "cuda"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.probe = ProbeOptions()  # type: ignore[misc]


@pytest.mark.parametrize("name", ["progress", "input_shapes", "load"])
def test_unknown_flat_name_is_refused(name: str) -> None:
    with pytest.raises(TypeError, match=repr(name)):
        ExportOptions.from_flat(**{name: 1})


def test_no_name_in_two_groups_and_every_name_is_an_export_item_argument() -> None:
    names = [f.name for klass in (LoadOptions, ProbeOptions, ArtifactOptions) for f in dataclasses.fields(klass)]
    assert len(names) == len(set(names))
    assert set(names) == ExportOptions.flat_names()
    # ``input_dim_orders`` and ``metadata`` are set by adapters and export_item, not by the caller.
    arguments = set(inspect.signature(export_item).parameters)
    assert ExportOptions.flat_names() - arguments == {"input_dim_orders", "metadata"}
