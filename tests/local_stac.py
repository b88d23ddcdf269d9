"""The local STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac) for the tests, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlm_export.stac.local_api import LocalSTACAPI, start_local_api

#: Tests that talk to the local server mark themselves with this (pytest-socket: loopback only).
LOOPBACK = pytest.mark.allow_hosts(["127.0.0.1"])


@pytest.fixture(scope="session")
def stac_api() -> Iterator[LocalSTACAPI]:
    """A running local STAC API on 127.0.0.1, stopped (and its database removed) at the end of the session."""
    with start_local_api() as api:
        yield api
