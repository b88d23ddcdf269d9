"""``mlm-export search`` against a hostile STAC API: its bounds are options, a bound hit is a reported error."""

from __future__ import annotations

import pytest
from hostile_api import SECRETS, Host, endless
from local_stac import LOOPBACK

from mlm_export.cli import main


@LOOPBACK
def test_search_stops_at_max_pages_and_a_raised_bound_lets_it_finish(capsys: pytest.CaptureFixture[str]) -> None:
    with Host() as api:
        served = endless(api, per_page=3, last=4)
        header = ["--header", f"X-Api-Key: {SECRETS['X-Api-Key']}"]
        assert main(["search", api.url, "--task", "classification", "--max-pages", "2", *header]) == 1
        err = capsys.readouterr().err
        assert "more than --max-pages 2 pages" in err and "--max-pages" in err and SECRETS["X-Api-Key"] not in err
        assert served["pages"] == 3
        served["pages"] = 0
        assert main(["search", api.url, "--task", "classification", "--max-pages", "4", "--max-items", "12"]) == 0
        assert capsys.readouterr().out.count("    task: classification") == 12  # every Item of the 4 pages
        assert main(["search", api.url, "--max-time", "0"]) == 1
        assert "max_time: expected a positive number" in capsys.readouterr().err
