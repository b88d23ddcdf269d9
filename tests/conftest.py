"""Shared fixtures: offline schemas from ../shared/schemas, small model factories."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from local_stac import stac_api  # noqa: F401 - session fixture of the local STAC API

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SCHEMA_DIR = Path(os.environ.get("MLM_EXPORT_SCHEMA_DIR", SHARED / "schemas"))
EXAMPLES_DIR = SHARED / "mlm-examples"

os.environ.setdefault("MLM_EXPORT_SCHEMA_DIR", str(SCHEMA_DIR))
# Every model the suite exports is probed twice, on shapes alone and with real forwards only; any difference fails.
os.environ.setdefault("MLM_EXPORT_VERIFY_PROBES", "1")
# pytest's log capture would format every torch.export DEBUG trace record (doubles the suite's time).
logging.getLogger("torch.__trace").propagate = False


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    """The offline schema store the tests validate against."""
    if not (SCHEMA_DIR / "INDEX.json").exists():
        pytest.fail(f"Schema store not found at {SCHEMA_DIR}; set MLM_EXPORT_SCHEMA_DIR.")
    return SCHEMA_DIR


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty artifact cache of the test's own ($MLM_EXPORT_CACHE_DIR); test files use it for every test."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("MLM_EXPORT_CACHE_DIR", str(directory))
    return directory
