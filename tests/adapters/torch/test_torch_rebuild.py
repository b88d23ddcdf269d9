"""adapters/torch/rebuild.py: resolving ``model_class`` given as text (``pkgutil.resolve_name``)."""

from __future__ import annotations

import collections

import pytest
import torch

from mlm_export.adapters.torch.rebuild import _resolve_model_class
from mlm_export.errors import ConfigurationError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("torch.nn:Linear", torch.nn.Linear),
        ("torch.nn.Linear", torch.nn.Linear),
        ("collections:OrderedDict", collections.OrderedDict),
        ("torch.nn.modules.linear:Linear", torch.nn.Linear),
    ],
)
def test_text_names_resolve(spec: str, expected: type) -> None:
    assert _resolve_model_class(spec) is expected


def test_a_class_passes_through() -> None:
    assert _resolve_model_class(torch.nn.Conv2d) is torch.nn.Conv2d


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("no_such_package_xyz.mod:Net", "cannot import module 'no_such_package_xyz'"),
        ("torch.nn:NoSuchLayer", "has no attribute 'NoSuchLayer'"),
        ("::", "not an importable name"),
        ("torch.nn:", "not a class or factory"),
    ],
)
def test_bad_names_are_configuration_errors(spec: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as raised:
        _resolve_model_class(spec)
    assert raised.value.hint
