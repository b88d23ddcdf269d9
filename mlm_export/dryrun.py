"""Caps on a dry-run: a memory budget checked against a prediction before anything runs, and a wall-clock timeout.

The prediction comes from the adapter (PyTorch: a meta-device forward that records the peak of live activation
bytes; ONNX: the inferred shapes of every intermediate value). It is checked before each real forward, so a model
given a huge ``input_shape`` is refused with :class:`~mlm_export.errors.DryRunMemoryError` instead of exhausting
the machine.

The timeout is a timer, not a child process (a forked child cannot use CUDA or hand back a model that holds open
files): in the main thread ``SIGALRM`` interrupts the forward at the next Python step, including ``time.sleep`` and
blocking waits; in any other thread a watchdog thread raises the interruption asynchronously in the running thread,
which takes effect at its next Python bytecode. A single long native kernel (one huge convolution) finishes first.
Either way :class:`~mlm_export.errors.DryRunTimeoutError` is raised, never a traceback of the forward.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlm_export.errors import ConfigurationError, DryRunMemoryError, DryRunTimeoutError

#: Default wall-clock limit of one dry-run (all its forwards), in seconds.
DEFAULT_TIMEOUT_S = 600.0
#: Share of the memory available when the dry-run starts that it may use by default (besides the weights).
DEFAULT_MEMORY_SHARE = 0.8

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$")


@dataclass(frozen=True)
class DryRunLimits:
    """The caps of one dry-run. ``max_memory`` None: default from free memory; 0 or below: no memory cap."""

    max_memory: int | None = None
    timeout: float | None = DEFAULT_TIMEOUT_S

    @classmethod
    def of(cls, options: Any) -> DryRunLimits:
        """The limits an ``ExportOptions`` asks for (``max_dry_run_memory``, ``dry_run_timeout``), checked.

        Raises:
            ConfigurationError: a value is not a size or not a positive number of seconds.
        """
        probe = getattr(options, "probe", options)
        memory = parse_size(getattr(probe, "max_dry_run_memory", None))
        return cls(memory, check_timeout(getattr(probe, "dry_run_timeout", DEFAULT_TIMEOUT_S)))


def parse_size(value: int | float | str | None, argument: str = "max_dry_run_memory") -> int | None:
    """Bytes from an int or a text such as ``"8GB"``, ``"512 MiB"``; None stays None.

    Raises:
        ConfigurationError: the value is not a size.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{argument}={value!r} is not a size.", hint="Pass bytes (int) or e.g. '8GB'.")
    if isinstance(value, (int, float)):
        return int(value)
    match = _SIZE.match(str(value).lower())
    if match is None or match.group(2) not in _UNITS:
        raise ConfigurationError(
            f"{argument}={value!r} is not a size.", hint="Pass bytes (int) or a text such as '8GB' or '512MiB'."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def check_timeout(value: float | None, argument: str = "dry_run_timeout") -> float | None:
    """A positive number of seconds, or None (no limit).

    Raises:
        ConfigurationError: the value is not a positive number.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{argument}={value!r} is not a positive number of seconds.", hint="Pass e.g. 120, or None for no limit."
        )
    return float(value)


def available_memory() -> int | None:
    """Bytes of RAM the system can give without swapping (``MemAvailable``), or None when unknown."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return None


def memory_budget(limits: DryRunLimits, weights: int, free: int | None) -> int | None:
    """The budget in bytes: the caller's, else the weights plus a share of ``free``; None for no cap."""
    if limits.max_memory is not None:
        return limits.max_memory if limits.max_memory > 0 else None
    if free is None:
        return None
    return weights + int(DEFAULT_MEMORY_SHARE * free)


def human_bytes(size: float) -> str:
    """1.2 GiB, 340 MiB, 12 KiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


@dataclass(frozen=True)
class RunPrediction:
    """The predicted peak of one real forward, by part (bytes); ``activations`` None: no shape-only run could tell.

    ``activations`` is the peak of the values alive at once during the forward, its inputs, outputs and kernel
    workspace included; ``inputs`` the input copies made besides them (the second input set of an extra-slices run);
    ``held`` the outputs of earlier runs still alive. Without ``activations`` the peak is guessed as
    :data:`UNPREDICTED_INPUT_FACTOR` times the input bytes.
    """

    weights: int
    activations: int | None
    inputs: int
    held: int = 0
    input_bytes: int = 0

    @property
    def guessed(self) -> bool:
        """Whether the activations are the input-bytes guess (no shape-only run worked)."""
        return self.activations is None

    @property
    def total(self) -> int:
        """Weights + activations (or the guess) + extra input copies + what earlier runs still hold."""
        activations = UNPREDICTED_INPUT_FACTOR * self.input_bytes if self.activations is None else self.activations
        return self.weights + activations + self.inputs + self.held


#: A forward that no shape-only run can predict (a graph meta tensors cannot run, an ONNX graph whose shapes
#: inference leaves unknown) is assumed to need this many times its input bytes (inputs, outputs and activations).
UNPREDICTED_INPUT_FACTOR = 16


def live_bytes(values: Any) -> int:
    """Bytes of the arrays (torch tensors' storages, numpy arrays' buffers) still alive among weak references."""
    seen: set[int] = set()
    total = 0
    for ref in values:
        value = ref()
        if value is None:
            continue
        storage = getattr(value, "untyped_storage", None)
        if storage is not None:
            storage = storage()
            key, size = storage.data_ptr(), storage.nbytes()
        else:
            base = value if getattr(value, "base", None) is None else value.base
            key, size = id(base), int(getattr(base, "nbytes", 0))
        if key not in seen:
            seen.add(key)
            total += size
    return total


def check_memory(prediction: RunPrediction, budget: int | None, what: str, *, given: bool) -> None:
    """Refuse a run whose predicted peak (weights + activations + input copies + held outputs) is over the budget.

    Raises:
        DryRunMemoryError: the prediction's total > ``budget``.
    """
    predicted = prediction.total
    if budget is None or predicted <= budget:
        return
    source = "max_dry_run_memory" if given else "the default budget (weights + 80 % of the free memory)"
    parts = f"weights {human_bytes(prediction.weights)} + "
    if prediction.guessed:
        parts += (f"{UNPREDICTED_INPUT_FACTOR} x the inputs' {human_bytes(prediction.input_bytes)}, a guess: no "
                  "shape-only run could predict this model")  # fmt: skip
    else:
        parts += f"activations {human_bytes(prediction.activations or 0)}"
    if prediction.inputs:
        parts += f" + input copies {human_bytes(prediction.inputs)}"
    if prediction.held:
        parts += f" + outputs of earlier runs {human_bytes(prediction.held)}"
    raise DryRunMemoryError(
        f"The dry-run {what} would need about {human_bytes(predicted)} ({parts}), over {source} of "
        f"{human_bytes(budget)}; nothing was run.",
        hint="Give smaller input sizes (input_shape=/example_input=, --input-shape), raise the cap with "
        "max_dry_run_memory= (--max-dry-run-memory), or pass 0 for no cap.",
    )


class _Interrupt(BaseException):
    """Raised inside the timed block when its time is up."""


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (None: no limit) with :class:`DryRunTimeoutError`."""
    if seconds is None:
        yield
        return
    use_signal = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if use_signal and signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        use_signal = False  # someone else's timer is running: do not replace it
    timer = _signal_timer(seconds) if use_signal else _watchdog(seconds)
    try:
        with timer:
            yield
    except _Interrupt:
        raise DryRunTimeoutError(
            f"The dry-run {what} ran longer than dry_run_timeout={seconds:g} s and was interrupted.",
            hint="Give smaller input sizes, or raise the limit with dry_run_timeout= (--dry-run-timeout).",
        ) from None


@contextlib.contextmanager
def _signal_timer(seconds: float) -> Iterator[None]:
    def expire(_signum: int, _frame: object) -> None:
        raise _Interrupt

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    target = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def expire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(_Interrupt))

    watchdog = threading.Timer(seconds, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
            watchdog.cancel()
            if state["fired"]:  # a pending interruption that has not been raised yet must not fire later
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)
