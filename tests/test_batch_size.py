"""Measured mlm:batch_size_suggestion: the stopping rule on a timed stand-in, then real torch models on CPU/CUDA."""

from __future__ import annotations

import time
from pathlib import Path

import pystac  # noqa: F401 - imported at collection: its urllib3 import probes IPv6 with a socket
import pytest

torch = pytest.importorskip("torch")

from mlm_export import export_item, validate_item  # noqa: E402
from mlm_export.batch_size import BatchRunner, BudgetExceededError, search_batch_size  # noqa: E402
from mlm_export.errors import ConfigurationError, ProbeError  # noqa: E402


def saturating(batch: int) -> int:
    """A stand-in forward: 8 ms up to batch 8, then linear in the batch (throughput flat beyond 8)."""
    time.sleep(max(0.008, 0.001 * batch))
    return 1000 * batch


class FakeClock:
    """``perf_counter`` for the search: time passes only when the stand-in says so (no scheduler noise)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_stops_when_two_doublings_gain_under_5_percent_and_suggests_the_knee(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr("mlm_export.batch_size.time", clock)

    def saturating_on_the_clock(batch: int) -> int:
        clock.now += max(0.008, 0.001 * batch)
        return 1000 * batch

    result = search_batch_size(saturating_on_the_clock, budget=10**9)
    assert result.seconds == pytest.approx({b: max(0.008, 0.001 * b) for b in (1, 2, 4, 8, 16, 32)})
    # 1, 2, 4, 8 gain; 16 and 32 do not (about 1000 samples/s each); 32 gains < 5 % over 8: stop there.
    assert sorted(result.throughput) == [1, 2, 4, 8, 16, 32]
    assert result.suggestion == 8
    assert "from batch 8 to 32" in result.stopped
    assert result.memory == {b: 1000 * b for b in result.throughput}


def test_one_warm_up_then_three_timed_forwards_per_batch_on_the_warm_up_inputs() -> None:
    calls: list[tuple[str, int]] = []

    def warm_up(batch: int) -> int:
        calls.append(("warm-up", batch))
        return saturating(batch)

    def forward(batch: int) -> None:
        calls.append(("timed", batch))
        saturating(batch)

    result = search_batch_size(warm_up, budget=5000, forward=forward)
    assert calls == [(kind, b) for b in (1, 2, 4) for kind in ("warm-up", "timed", "timed", "timed")]
    assert set(result.seconds) == {1, 2, 4}
    assert all(0.008 <= result.seconds[b] < 1 for b in result.seconds)  # each stand-in forward sleeps >= 8 ms
    assert result.throughput[4] == pytest.approx(4 / result.seconds[4])


def test_batch_runner_reuses_the_inputs_and_measures_activations_on_cpu() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.Flatten())
    runner = BatchRunner(net, [((1, 2, 4, 4), "float32")], torch.device("cpu"))
    need = runner(2)
    # inputs 2x2x4x4, conv output 2x3x4x4, flatten output 2x48, all float32 (the Sequential's own output too)
    assert need == 4 * (2 * 2 * 16 + 2 * 3 * 16 + 2 * 48 + 2 * 48)
    inputs = runner.inputs(2)
    runner.forward(2)
    assert runner.inputs(2) is inputs  # the timed runs make no new inputs
    assert runner.inputs(4)[0].shape == (4, 2, 4, 4)
    assert torch.equal(runner.inputs(2)[0], inputs[0])  # seeded: a batch's inputs are the same when remade


def test_stops_before_a_doubling_would_pass_the_budget() -> None:
    result = search_batch_size(saturating, budget=5000)
    assert sorted(result.throughput) == [1, 2, 4]  # batch 8 would need about 8000 > 5000
    assert "batch 8 would need about 8000 bytes" in result.stopped


def test_batch_one_over_the_budget_is_a_clear_error() -> None:
    with pytest.raises(BudgetExceededError, match="Batch size 1 needs 1000 bytes.*budget of 500") as excinfo:
        search_batch_size(saturating, budget=500)
    assert isinstance(excinfo.value, ProbeError) and "memory_budget" in excinfo.value.hint


def test_out_of_memory_stops_the_search_and_is_reported() -> None:
    class OOM(RuntimeError):
        pass

    def run(batch: int) -> int:
        if batch >= 4:
            raise OOM("out of memory")
        time.sleep(0.002 * batch if batch > 1 else 0.004)
        return batch

    result = search_batch_size(run, budget=10**9, is_oom=lambda e: isinstance(e, OOM))
    assert sorted(result.throughput) == [1, 2] and result.stopped == "out of memory at batch 4"
    with pytest.raises(RuntimeError, match="not OOM"):  # other failures are not taken for the limit
        search_batch_size(lambda b: (_ for _ in ()).throw(RuntimeError("not OOM")), budget=10)


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def test_real_model_gets_a_measured_suggestion(tmp_path: Path) -> None:
    item = export_item(
        tiny(), input_shape=[-1, 4], tasks=["regression"], artifact_dir=tmp_path, suggest_batch_size=True
    )
    props = item.properties
    hyper = props["mlm:hyperparameters"]
    throughput = {int(k): v for k, v in hyper["batch_size.throughput"].items()}
    suggestion = props["mlm:batch_size_suggestion"]
    assert suggestion in throughput and all(b & (b - 1) == 0 for b in throughput)  # powers of two from 1
    assert min(throughput) == 1
    assert throughput[suggestion] >= 0.9 * max(throughput.values())
    assert all(throughput[b] < 0.9 * max(throughput.values()) for b in throughput if b < suggestion)
    assert hyper["batch_size.samples_per_second"] == throughput[suggestion]
    assert hyper["batch_size.device"] == "cpu (CPU)" and hyper["batch_size.input_shape"] == [[1, 4]]
    assert "mlm:accelerator_summary" not in props or "batch" not in props["mlm:accelerator_summary"]
    assert validate_item(item).valid


def test_budget_below_batch_one_reports_the_measured_need(tmp_path: Path) -> None:
    # CPU need = input + every module's output at batch 1, float32: 4 + 8 + 8 + 2 + 2 (the Sequential) = 24 floats.
    with pytest.raises(BudgetExceededError, match="needs 96 bytes"):
        export_item(
            tiny(), input_shape=[-1, 4], tasks=["regression"], artifact_dir=tmp_path, suggest_batch_size=True,
            memory_budget=50,
        )  # fmt: skip
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("budget", [0, -1, "1GB", True, 1.5])
def test_bad_memory_budget(tmp_path: Path, budget: object) -> None:
    with pytest.raises(ConfigurationError, match="memory_budget"):
        export_item(
            tiny(), input_shape=[-1, 4], tasks=["regression"], artifact_dir=tmp_path, suggest_batch_size=True,
            memory_budget=budget,
        )  # fmt: skip


def test_fixed_batch_dimension_gets_no_suggestion(tmp_path: Path) -> None:
    class FixedBatch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(2, 4).sum(dim=1, keepdim=True)

    with pytest.raises(ConfigurationError, match="batch dimension is fixed"):
        export_item(FixedBatch(), example_input=torch.zeros(2, 4), tasks=["regression"], artifact_dir=tmp_path,
                    suggest_batch_size=True)  # fmt: skip


class BatchHungryNet(torch.nn.Module):
    """A linear map; at batch 4 and more its real forward asks the CPU allocator for 64 TiB, which fails."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Allocates for real (no meta run) from batch 4: a genuine out-of-memory, as a RuntimeError."""
        if x.shape[0] >= 4 and x.device.type != "meta" and not isinstance(x, torch._subclasses.FakeTensor):
            torch.empty(2**44)
        return self.linear(x)


def test_cpu_allocation_failure_ends_the_search_as_its_limit(tmp_path: Path) -> None:
    """torch's CPU allocator raises RuntimeError, not OutOfMemoryError: still the limit (policy.out_of_memory)."""
    item = export_item(
        BatchHungryNet(), input_shape=[-1, 4], tasks=["regression"], artifact_dir=tmp_path, suggest_batch_size=True
    )
    hyper = item.properties["mlm:hyperparameters"]
    assert hyper["batch_size.stopped"] == "out of memory at batch 4"
    assert sorted(int(b) for b in hyper["batch_size.throughput"]) == [1, 2]
    assert item.properties["mlm:batch_size_suggestion"] in (1, 2)


@pytest.mark.cuda
def test_cuda_budget_from_max_memory_allocated(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 2, 1))
    item = export_item(model, input_shape=[-1, 3, 64, 64], tasks=["semantic-segmentation"], artifact_dir=tmp_path,
                       device="cuda", suggest_batch_size=True)  # fmt: skip
    hyper = item.properties["mlm:hyperparameters"]
    assert hyper["batch_size.device"].startswith("cuda:0 (")
    assert item.properties["mlm:batch_size_suggestion"] >= 1
    with pytest.raises(BudgetExceededError, match="Batch size 1 needs"):
        export_item(model, input_shape=[-1, 3, 64, 64], tasks=["semantic-segmentation"], artifact_dir=tmp_path / "b",
                    device="cuda", suggest_batch_size=True, memory_budget=1024)  # fmt: skip
