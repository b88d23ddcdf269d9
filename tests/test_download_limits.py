"""DownloadLimits from the public arguments and the environment; the Meter's size, rate and time bounds."""

from __future__ import annotations

import time

import pytest

from mlm_export.download_limits import DEFAULT_MAX_DOWNLOAD_SIZE, DEFAULT_MIN_RATE, DownloadLimits
from mlm_export.errors import ConfigurationError, DownloadLimitError


def test_defaults_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLM_EXPORT_MAX_DOWNLOAD_SIZE", raising=False)
    monkeypatch.delenv("MLM_EXPORT_MIN_DOWNLOAD_RATE", raising=False)
    assert DownloadLimits.of() == DownloadLimits(DEFAULT_MAX_DOWNLOAD_SIZE, DEFAULT_MIN_RATE, 60.0, None)
    assert DEFAULT_MAX_DOWNLOAD_SIZE == 16 * 2**30 and DEFAULT_MIN_RATE == 32 * 1024
    assert DownloadLimits.of("512MiB", 30).max_size == 512 * 2**20
    assert DownloadLimits.of("8GB").max_size == 8 * 10**9
    assert DownloadLimits.of(0).max_size is None  # 0: no cap
    assert DownloadLimits.of(download_timeout=2.5).timeout == 2.5
    monkeypatch.setenv("MLM_EXPORT_MAX_DOWNLOAD_SIZE", "1KiB")
    monkeypatch.setenv("MLM_EXPORT_MIN_DOWNLOAD_RATE", "0")
    limits = DownloadLimits.of()
    assert (limits.max_size, limits.min_rate) == (1024, 0)
    assert DownloadLimits.of(2048).max_size == 2048  # the argument wins over the environment


@pytest.mark.parametrize(
    ("arguments", "match"),
    [({"max_download_size": "lots"}, "max_download_size='lots'"), ({"max_download_size": True}, "not a size"),
     ({"download_timeout": 0}, "download_timeout=0"), ({"download_timeout": -1.0}, "positive")],
)  # fmt: skip
def test_bad_values_are_configuration_errors(arguments: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DownloadLimits.of(**arguments)


def test_bad_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLM_EXPORT_MAX_DOWNLOAD_SIZE", "huge")
    with pytest.raises(ConfigurationError, match="MLM_EXPORT_MAX_DOWNLOAD_SIZE"):
        DownloadLimits.of()


def test_meter_size_cap_and_bound() -> None:
    meter = DownloadLimits(max_size=100).meter("http://h/m")
    assert meter.bound(None) == 100 and meter.bound(50) == 50 and meter.bound(500) == 100
    meter.add(100)
    with pytest.raises(DownloadLimitError, match="sent more than 100 bytes") as info:
        meter.add(1)
    assert info.value.limit == "max_download_size"
    with pytest.raises(DownloadLimitError, match="announces 101 bytes"):
        meter.check_size(101, "announces")
    assert DownloadLimits(max_size=None).meter("u").bound(None) is None


def test_meter_rate_is_averaged_over_the_window() -> None:
    limits = DownloadLimits(min_rate=1000, rate_window=0.2)
    steady = limits.meter("http://h/steady")
    for _ in range(20):  # 50 bytes every 20 ms: 2500 B/s
        time.sleep(0.02)
        steady.add(50)
    slow = limits.meter("http://h/slow")
    with pytest.raises(DownloadLimitError, match="too slow") as info:
        for _ in range(40):  # 5 bytes every 20 ms: 250 B/s
            time.sleep(0.02)
            slow.add(5)
    assert info.value.limit == "min_download_rate" and 0.2 <= time.monotonic() - slow.started < 0.5


def test_meter_total_timeout() -> None:
    meter = DownloadLimits(min_rate=0, timeout=0.1).meter("http://h/m")
    meter.add(1)
    time.sleep(0.12)
    with pytest.raises(DownloadLimitError, match="download_timeout=0.1 s") as info:
        meter.add(1)
    assert info.value.limit == "download_timeout"
    assert meter.stalled() is not None and meter.remaining() == 0.01
