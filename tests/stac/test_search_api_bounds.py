"""A hostile STAC API: headers stay with their origin, and endless, huge or slow pagination is bounded.

Two real loopback servers play the API and a foreign host; they record the headers of every request they get.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from hostile_api import SECRETS, Host, answer_json, endless, page, root
from local_stac import LOOPBACK

from mlm_export.errors import ConfigurationError, SearchLimitError
from mlm_export.stac.search import search


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    with Host() as api, Host() as foreign:
        yield api, foreign


@LOOPBACK
def test_headers_reach_the_api_origin_and_never_a_next_link_elsewhere(hosts: tuple[Host, Host]) -> None:
    api, foreign = hosts
    api.routes["/search"] = lambda p: answer_json(page(range(2), f"{api.url}/search?page=2") if p == "/search" else
                                            page(range(2, 3), f"{foreign.url}/search?page=3"))  # fmt: skip
    api.routes["/"] = lambda p: answer_json(root(f"{api.url}/search"))
    foreign.routes["/search"] = lambda p: answer_json(page(range(3, 4), None))
    hits = search(api.url, tasks=["classification"], headers=SECRETS)
    assert sorted(h.id for h in hits) == ["m0", "m1", "m2", "m3"]  # the foreign page was still read
    assert [p for _, p, _ in api.seen] == ["/", "/search", "/search?page=2"]
    assert api.got_secrets() == ["/", "/search", "/search?page=2"]  # same origin: every request authenticated
    assert [p for _, p, _ in foreign.seen] == ["/search?page=3"]
    assert foreign.got_secrets() == []


@LOOPBACK
def test_a_search_link_or_redirect_to_another_origin_gets_no_headers(hosts: tuple[Host, Host]) -> None:
    api, foreign = hosts
    api.routes["/"] = lambda p: answer_json(root(f"{foreign.url}/search"))  # the search endpoint is elsewhere
    foreign.routes["/search"] = lambda p: answer_json(page(range(1), f"{api.url}/moved"))
    api.routes["/moved"] = lambda p: (302, {"Location": f"{foreign.url}/last"}, [b""])  # back to the API, redirected
    foreign.routes["/last"] = lambda p: answer_json(page(range(1, 2), None))
    hits = search(api.url, tasks=["classification"], headers=SECRETS)
    assert sorted(h.id for h in hits) == ["m0", "m1"]
    assert [p for _, p, _ in foreign.seen] == ["/search", "/last"]
    assert foreign.got_secrets() == []  # neither the link nor the redirect carried Authorization or X-Api-Key
    assert api.got_secrets() == ["/", "/moved"]


@LOOPBACK
def test_endless_pages_stop_at_max_pages_and_max_items(hosts: tuple[Host, Host]) -> None:
    api, _ = hosts
    served = endless(api, per_page=50)
    with pytest.raises(SearchLimitError, match="more than max_pages=5 pages") as caught:
        search(api.url, tasks=["classification"], max_pages=5)
    assert "max_pages=" in (caught.value.hint or "") and "--max-pages" in (caught.value.hint or "")
    assert served["pages"] == 6
    served["pages"] = 0
    with pytest.raises(SearchLimitError, match="more than max_items=120 Items"):
        search(api.url, tasks=["classification"], max_items=120)
    assert served["pages"] == 3
    served = endless(api, per_page=500)
    with pytest.raises(SearchLimitError, match="max_items=20000"):  # the default bound holds without arguments
        search(api.url, tasks=["classification"])
    assert served["pages"] == 41  # 20,500 Items at 500 a page, not the server's 500,000
    served = endless(api, per_page=50, last=10)
    assert len(search(api.url, tasks=["classification"], max_pages=10, max_items=500)) == 500  # at the bounds: ok


@LOOPBACK
def test_slow_pages_and_a_trickled_answer_stop_at_max_time(hosts: tuple[Host, Host]) -> None:
    api, _ = hosts
    endless(api, per_page=1, delay=0.2)
    start = time.monotonic()
    with pytest.raises(SearchLimitError, match="more than max_time=1 s"):
        search(api.url, tasks=["classification"], max_time=1)
    assert time.monotonic() - start < 2.5

    def trickle(path: str) -> tuple[int, dict[str, str], Iterator[bytes]]:
        def chunks() -> Iterator[bytes]:
            yield b'{"type": "FeatureCollection", "features": [' + b" " * 10
            for _ in range(200):  # one byte every 0.1 s: each read is quick, the answer never ends in time
                time.sleep(0.1)
                yield b" "

        return 200, {}, chunks()

    api.routes["/search"] = trickle
    start = time.monotonic()
    with pytest.raises(SearchLimitError, match="max_time=1"):
        search(api.url, tasks=["classification"], max_time=1)
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize("bound", ["max_pages", "max_items", "max_time"])
def test_bounds_are_checked_and_apply_to_an_api_only(bound: str, tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"{bound}: expected a positive"):
        search("http://127.0.0.1:9", **{bound: 0})
    with pytest.raises(ConfigurationError, match="apply to a STAC API URL only"):
        search(tmp_path, **{bound: 5})
