"""Every mlm-export error survives pickling (a dask worker's error reaches the caller): type, message, hint, fields."""

from __future__ import annotations

import inspect
import pickle

import pytest

from mlm_export import errors

#: Required keyword arguments of the errors that take more than a message and a hint.
EXTRA = {
    errors.DownloadLimitError: {"limit": "max_download_size", "url": "http://127.0.0.1/model.pt"},
    errors.MissingBandError: {"missing": ["B8A"], "available": ["B02", "B03"]},
    errors.STACAPIError: {"status": 502, "published": ["a"]},
    errors.ItemValidationError: {"problems": ["mlm:name is missing"]},
    errors.FieldError: {"field": "bbox"},
}
CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.MLMExportError)]


def _extra(cls: type) -> dict:
    for base in cls.__mro__:
        if base in EXTRA:
            return EXTRA[base]
    return {}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_keeps_its_type_hint_and_fields_through_pickle(cls: type) -> None:
    error = cls("Band 'B8A' of 'scene.tif' is missing.", hint="Map it with --band B8A=FILE.", **_extra(cls))
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls
    assert back.hint == "Map it with --band B8A=FILE." and back.message == "Band 'B8A' of 'scene.tif' is missing."
    assert str(back) == "Band 'B8A' of 'scene.tif' is missing. Hint: Map it with --band B8A=FILE."
    assert vars(back) == vars(error) and back.args == error.args
    for name, value in _extra(cls).items():
        assert getattr(back, name) == value


def test_the_errors_with_required_fields_are_covered() -> None:
    # the two whose __init__ cannot be called with the message alone: the old pickling raised TypeError on them
    assert {errors.DownloadLimitError, errors.MissingBandError} <= set(CLASSES)
