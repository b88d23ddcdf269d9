"""Bounds on one download: size, minimum average rate over a sliding window, total time.

A hostile or broken server can send an endless body, or trickle bytes so slowly that no per-read timeout ever
fires. :class:`DownloadLimits` holds the bounds every remote download of :mod:`mlm_export.transfer` obeys (artifact
bodies over http(s) and s3, and the Item JSON); a :class:`Meter` applies them to one transfer as its bytes arrive
and raises :class:`~mlm_export.errors.DownloadLimitError`, which names the bound, the URL, the figures and the
argument that raises it.

- size: ``file:size`` when the Item states it (more bytes are a ``ChecksumMismatchError``), and always at most
  ``max_size`` (:data:`DEFAULT_MAX_DOWNLOAD_SIZE`, or ``$MLM_EXPORT_MAX_DOWNLOAD_SIZE``; ``max_download_size=``);
- rate: once a transfer has run ``rate_window`` seconds, fewer than ``min_rate`` bytes/s on average over the last
  window stop it (``$MLM_EXPORT_MIN_DOWNLOAD_RATE``; 0 turns the bound off);
- time: ``timeout`` seconds for the whole transfer, connecting included (``download_timeout=``; none by default).
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass, field

from mlm_export.dryrun import check_timeout, human_bytes, parse_size
from mlm_export.errors import ConfigurationError, DownloadLimitError

#: Largest download when ``max_download_size`` is not given: 16 GiB (a bigger model is usually sharded).
DEFAULT_MAX_DOWNLOAD_SIZE = 16 * 2**30
#: Environment variable overriding :data:`DEFAULT_MAX_DOWNLOAD_SIZE` (bytes or e.g. ``64GiB``; 0: no cap).
MAX_SIZE_ENV = "MLM_EXPORT_MAX_DOWNLOAD_SIZE"
#: Slowest average rate a transfer may keep over :data:`DEFAULT_RATE_WINDOW` seconds: 32 KiB/s.
DEFAULT_MIN_RATE = 32 * 1024
#: Environment variable overriding :data:`DEFAULT_MIN_RATE` (bytes per second; 0: no rate bound).
MIN_RATE_ENV = "MLM_EXPORT_MIN_DOWNLOAD_RATE"
#: The sliding window the rate is averaged over, in seconds (also the longest wait for one read).
DEFAULT_RATE_WINDOW = 60.0


@dataclass(frozen=True)
class DownloadLimits:
    """The bounds of one download.

    Attributes:
        max_size: most bytes one download may bring (``None``: no cap).
        min_rate: slowest average rate in bytes per second over ``rate_window`` (0: no rate bound).
        rate_window: seconds the rate is averaged over; also the longest wait for a single read.
        timeout: seconds for the whole transfer (``None``: no total limit).
    """

    max_size: int | None = DEFAULT_MAX_DOWNLOAD_SIZE
    min_rate: float = DEFAULT_MIN_RATE
    rate_window: float = DEFAULT_RATE_WINDOW
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.max_size is not None and (isinstance(self.max_size, bool) or self.max_size < 0):
            raise ConfigurationError(f"max_download_size={self.max_size!r} is not a size.", hint="Pass bytes >= 0.")
        if self.min_rate < 0 or not self.rate_window > 0:
            raise ConfigurationError(
                f"min_rate={self.min_rate!r}, rate_window={self.rate_window!r}: need min_rate >= 0, rate_window > 0.",
                hint="Pass e.g. min_rate=32768, rate_window=60.",
            )
        check_timeout(self.timeout, "download_timeout")

    @classmethod
    def of(cls, max_download_size: int | str | None = None, download_timeout: float | None = None) -> DownloadLimits:
        """The limits for ``max_download_size=`` / ``download_timeout=`` (the public arguments), defaults filled in.

        ``max_download_size``: bytes or a text such as ``"8GB"``/``"512MiB"``; ``None`` takes
        ``$MLM_EXPORT_MAX_DOWNLOAD_SIZE`` or :data:`DEFAULT_MAX_DOWNLOAD_SIZE`; 0 or below: no cap.
        ``download_timeout``: seconds for each whole transfer; ``None``: none. The minimum rate comes from
        ``$MLM_EXPORT_MIN_DOWNLOAD_RATE`` (bytes/s) or :data:`DEFAULT_MIN_RATE`.

        Raises:
            ConfigurationError: a value is not a size / not a positive number of seconds.
        """
        if max_download_size is None:
            from_env = os.environ.get(MAX_SIZE_ENV) or None
            size = parse_size(from_env, f"${MAX_SIZE_ENV}") if from_env else DEFAULT_MAX_DOWNLOAD_SIZE
        else:
            size = parse_size(max_download_size, "max_download_size")
        rate_text = os.environ.get(MIN_RATE_ENV) or None
        rate = parse_size(rate_text, f"${MIN_RATE_ENV}") if rate_text else DEFAULT_MIN_RATE
        timeout = check_timeout(download_timeout, "download_timeout")
        return cls(size if size is not None and size > 0 else None, float(rate or 0), timeout=timeout)

    def meter(self, url: str) -> Meter:
        """A meter for one transfer of ``url``, its clocks started now."""
        return Meter(self, url)


def resolve_limits(limits: DownloadLimits | None) -> DownloadLimits:
    """``limits``, or the defaults (environment included) when ``None``."""
    return limits if limits is not None else DownloadLimits.of()


@dataclass
class Meter:
    """One transfer under its :class:`DownloadLimits`: counts bytes as they arrive and raises at the first bound.

    Rate samples are kept at most every ``rate_window / 16`` seconds, so the memory stays small whatever the chunk
    size; the rate checked is the average since the newest sample at least one window old.
    """

    limits: DownloadLimits
    url: str
    received: int = 0
    started: float = field(default_factory=time.monotonic)
    #: Set when the total timeout shut the connection (a read that then ends early is reported as the timeout).
    interrupted: bool = False
    _samples: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)

    def __post_init__(self) -> None:
        self._samples.append((self.started, 0))
        self._step = self.limits.rate_window / 16
        self._last = self.started

    @property
    def deadline(self) -> float | None:
        """The monotonic time the transfer must end by, or ``None``."""
        return None if self.limits.timeout is None else self.started + self.limits.timeout

    def remaining(self) -> float | None:
        """Seconds left before the total timeout (at least 0.01), or ``None`` without one."""
        deadline = self.deadline
        return None if deadline is None else max(deadline - time.monotonic(), 0.01)

    def read_timeout(self, longest: float) -> float:
        """Seconds one read may wait: ``longest``, at most the rate window and the time left (never below 0.01)."""
        wait = min(longest, self.limits.rate_window) if self.limits.min_rate > 0 else longest
        if self.deadline is not None:
            wait = min(wait, self.deadline - time.monotonic())
        return max(wait, 0.01)

    def bound(self, stated: int | None) -> int | None:
        """The most bytes to read: ``stated`` (the Item's ``file:size``) or the size cap, whichever is smaller."""
        if stated is None:
            return self.limits.max_size
        return stated if self.limits.max_size is None else min(stated, self.limits.max_size)

    def check_size(self, size: int | None, what: str) -> None:
        """Refuse before reading when ``size`` (stated by the Item or announced by the server) is over the cap."""
        cap = self.limits.max_size
        if size is not None and cap is not None and size > cap:
            raise self._size_error(f"{what} {size} bytes ({human_bytes(size)}), over", "; not downloading")

    def add(self, count: int) -> None:
        """Count ``count`` bytes that just arrived; raise when a bound is hit."""
        self.received += count
        self._last = time.monotonic()
        cap = self.limits.max_size
        if cap is not None and self.received > cap:
            raise self._size_error(f"sent more than {cap} bytes, over", "; transfer stopped")
        self.check_time()

    def check_time(self) -> None:
        """Raise when the total timeout passed or the average rate over the last window is too low."""
        now = time.monotonic()
        deadline = self.deadline
        if deadline is not None and now > deadline:
            raise self.timeout_error()
        if self.limits.min_rate <= 0:
            return
        samples, window = self._samples, self.limits.rate_window
        if now - samples[-1][0] >= self._step:
            samples.append((now, self.received))
        while len(samples) > 1 and samples[1][0] <= now - window:
            samples.popleft()
        since, base = samples[0]
        if now - since >= window and (self.received - base) < self.limits.min_rate * (now - since):
            raise self.rate_error(now - since, self.received - base)

    def timeout_error(self) -> DownloadLimitError:
        """The error for a transfer past its total timeout."""
        return DownloadLimitError(
            f"Download of '{self.url}' took longer than download_timeout={self.limits.timeout:g} s "
            f"({self.received} bytes received); stopped.",
            limit="download_timeout",
            url=self.url,
            hint="Raise download_timeout= (--download-timeout SECONDS), or download from a faster server.",
        )

    def rate_error(self, seconds: float, count: int) -> DownloadLimitError:
        """The error for a transfer slower than the minimum rate over ``seconds``."""
        return DownloadLimitError(
            f"Download of '{self.url}' is too slow: {count} bytes in the last {seconds:.1f} s "
            f"({count / seconds:.0f} B/s), under the minimum of {self.limits.min_rate:.0f} B/s averaged over "
            f"{self.limits.rate_window:g} s; stopped.",
            limit="min_download_rate",
            url=self.url,
            hint=f"The server trickles or stalls: try again later, or set ${MIN_RATE_ENV} to a lower rate "
            "(bytes per second; 0 turns the bound off).",
        )

    def stalled(self) -> DownloadLimitError | None:
        """The limit error a failed read stands for (the deadline passed, nothing came for a window), else ``None``."""
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline - 0.05:
            return self.timeout_error()
        if self.limits.min_rate > 0 and now - self._last >= self.limits.rate_window - 0.05:
            return self.rate_error(now - self._last, 0)
        return None

    def _size_error(self, said: str, outcome: str) -> DownloadLimitError:
        cap = self.limits.max_size or 0
        return DownloadLimitError(
            f"'{self.url}' {said} max_download_size={cap} ({human_bytes(cap)}){outcome}.",
            limit="max_download_size",
            url=self.url,
            hint=f"If you trust this file, raise the cap: max_download_size= (--max-download-size, "
            f"${MAX_SIZE_ENV}), e.g. '64GiB'; 0 turns it off.",
        )


__all__ = [
    "DEFAULT_MAX_DOWNLOAD_SIZE",
    "DEFAULT_MIN_RATE",
    "DEFAULT_RATE_WINDOW",
    "DownloadLimits",
    "Meter",
    "resolve_limits",
]
