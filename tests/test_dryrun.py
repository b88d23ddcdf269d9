"""Dry-run caps: memory predicted before running and refused over the budget, a wall-clock timeout, typed errors."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from mlm_export import check_item, export_item, inspect_model, save_item
from mlm_export.dryrun import parse_size, time_limit
from mlm_export.errors import ConfigurationError, DryRunMemoryError, DryRunTimeoutError

REPO = Path(__file__).resolve().parents[1]


def test_huge_input_is_refused_before_running(tmp_path: Path) -> None:
    """A 260-parameter conv at 9000x9000 (17 GB of activations) is refused from the prediction, in seconds."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
    start = time.perf_counter()
    with pytest.raises(DryRunMemoryError, match=r"max_dry_run_memory of 1\.0 GiB") as caught:
        inspect_model(model, artifact_dir=tmp_path, input_shape=[-1, 3, 9000, 9000], max_dry_run_memory="1GiB")
    assert time.perf_counter() - start < 30
    # input 3*9000*9000*4 B + two 8-channel maps alive at once: at least 5.4 GB predicted
    predicted = float(str(caught.value).split("about ")[1].split(" GiB")[0])
    assert predicted >= (3 + 16) * 9000 * 9000 * 4 / 2**30 * 0.99
    assert caught.value.hint and "--max-dry-run-memory" in caught.value.hint


def test_prediction_counts_live_activations(tmp_path: Path) -> None:
    """A budget just under weights + input + the two largest live maps refuses; one just over it runs."""
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 4, 1))
    weights = sum(p.numel() * 4 for p in model.parameters())
    # at the second conv: input (3 ch) may be freed; conv1 output 16 ch + conv2 output 4 ch alive. Input is kept
    # by the caller, so the peak is input + 16-ch map + 4-ch map at 64x64.
    floor = weights + (3 + 16 + 4) * 64 * 64 * 4
    with pytest.raises(DryRunMemoryError):
        inspect_model(
            model, artifact_dir=tmp_path, input_shape=[1, 3, 64, 64], probe_dynamic=False, max_dry_run_memory=floor - 1
        )
    # oneDNN runs the 1x1 conv on copies of its 16-channel input and its output padded to 16 channels (AVX-512)
    roomy = floor + 2 * 16 * 64 * 64 * 4 + weights
    described = inspect_model(
        model, artifact_dir=tmp_path, input_shape=[1, 3, 64, 64], probe_dynamic=False, max_dry_run_memory=roomy
    )
    assert described.outputs[0].shape == (1, 4, 64, 64)


class Sleeper(nn.Module):
    """A forward that never ends in time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sleep on real tensors (meta ones pass)."""
        if not x.is_meta:
            time.sleep(60)
        return self.fc(x)


def test_sleeping_forward_times_out(tmp_path: Path) -> None:
    """The main thread's timer interrupts a sleeping forward with a typed error."""
    start = time.perf_counter()
    with pytest.raises(DryRunTimeoutError, match="dry_run_timeout=1 s"):
        inspect_model(Sleeper(), artifact_dir=tmp_path, input_shape=[1, 4], dry_run_timeout=1)
    assert time.perf_counter() - start < 20


def test_busy_forward_in_a_thread_times_out() -> None:
    """Outside the main thread the watchdog interrupts a forward looping in Python."""
    caught: list[BaseException] = []

    def busy() -> None:
        try:
            with time_limit(0.5, "of a test"):
                while True:
                    sum(range(1000))
        except BaseException as exc:
            caught.append(exc)

    worker = threading.Thread(target=busy)
    worker.start()
    worker.join(20)
    assert not worker.is_alive()
    assert isinstance(caught[0], DryRunTimeoutError)


def test_time_limit_leaves_no_pending_interrupt() -> None:
    """A block that ends in time is not interrupted later."""
    with time_limit(0.2, "of a test"):
        pass
    time.sleep(0.4)


def test_check_item_has_the_same_caps(tmp_path: Path) -> None:
    """check_item refuses a run over max_dry_run_memory and honours dry_run_timeout."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    item = export_item(model, artifact_dir=tmp_path, input_shape=[-1, 3, 64, 64], bbox=[0, 0, 1, 1],
                       datetime="2020-01-01T00:00:00Z")  # fmt: skip
    path = save_item(item, tmp_path / "item.json")
    assert check_item(path, model_class=lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))).ok
    with pytest.raises(DryRunMemoryError):
        check_item(path, model_class=lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)), max_dry_run_memory=1000)


@pytest.mark.parametrize("bad", ["lots", "8 parsecs", True, "-"])
def test_bad_sizes_are_configuration_errors(bad: object) -> None:
    """Sizes are bytes or text with a unit."""
    with pytest.raises(ConfigurationError, match="max_dry_run_memory"):
        parse_size(bad)  # type: ignore[arg-type]
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("512MiB") == 512 * 2**20


def test_cli_reports_the_cap(tmp_path: Path) -> None:
    """--max-dry-run-memory: exit 1, one line naming the cap and its flag."""
    path = tmp_path / "conv.pt"
    torch.save(nn.Conv2d(3, 8, 3), path)
    result = subprocess.run(
        [sys.executable, "-m", "mlm_export", "export", str(path), "--trust-pickle", "--input-shape=-1,3,512,512",
         "--max-dry-run-memory", "1KB", "-o", str(tmp_path / "item.json")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "max_dry_run_memory" in result.stderr and "--max-dry-run-memory" in result.stderr
    assert "Traceback" not in result.stderr
