"""publish keeps its headers to the API: a redirect to another host is not followed, so the token never leaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_api import SECRETS, Host
from local_stac import LOOPBACK
from test_collection import EXAMPLES

from mlm_export.errors import STACAPIError
from mlm_export.stac.publish import publish


@LOOPBACK
def test_a_redirect_to_another_origin_is_an_error_and_carries_no_token(schema_dir: Path) -> None:
    with Host() as api, Host() as foreign:
        api.routes["/"] = lambda p: (307, {"Location": f"{foreign.url}{p}"}, [b""])
        with pytest.raises(STACAPIError, match="307"):
            publish(EXAMPLES[0], api.url, "models", headers=SECRETS, href_base="https://example.com/m/",
                    schema_dir=schema_dir, progress=False)  # fmt: skip
    assert api.got_secrets() and foreign.seen == []
