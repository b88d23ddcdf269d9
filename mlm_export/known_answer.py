"""A known-answer test that travels with the model: an example input and the model's output on it, as one asset.

``export_item(..., known_answer=True)`` runs the model once on a small seeded input (the declared shape, dynamic
dimensions at the dry-run's base sizes, batch 1, in the input's ``data_type``) and publishes both in one
safetensors file, the asset :data:`ASSET_KEY` (roles :data:`ROLES`, ``application/octet-stream``, hashed like every
artifact, no ``mlm:artifact_type``). Tensors are named ``input.<mlm:input name>`` and ``output.<mlm:output name>``;
the file's metadata records their order, the output dtypes and the device kind it ran on.

:func:`compare` is what ``check_item`` and ``predict(verify=True)`` use: exact for integer and bool outputs, else
the tolerance of :func:`tolerance` (``rtol=1e-4, atol=1e-5`` for float32 on the same device kind, wider across
devices and for float16/bfloat16). The forward (:func:`forward_all`) is the same at export and at check: eval mode,
``torch.inference_mode``, every output flattened in order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlm_export.description import Artifact, InputSpec, ModelDescription
from mlm_export.errors import ConfigurationError, ItemValidationError, KnownAnswerMismatchError, ProbeError
from mlm_export.probing import DEFAULT_SIZES

if TYPE_CHECKING:
    from mlm_export.adapters import ExportOptions
    from mlm_export.files import Staging
    from mlm_export.publishing import ArtifactWriter

#: The asset key, roles and media type of the known-answer file.
ASSET_KEY = "known-answer"
ROLES = ("example", "data")
MEDIA_TYPE = "application/octet-stream"
INPUT_PREFIX, OUTPUT_PREFIX = "input.", "output."
#: Largest known-answer file (inputs + outputs); a fixed input shape bigger than this is refused.
MAX_BYTES = 8 * 2**20
#: Seed of the example input (one generator per input, seeded SEED + its index).
SEED = 0

#: (rtol, atol) by output dtype: on the device kind that exported, and across device kinds (cpu vs cuda: TF32, kernels).
TOLERANCES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "float64": ((1e-4, 1e-5), (1e-2, 1e-3)),
    "float32": ((1e-4, 1e-5), (1e-2, 1e-3)),
    "float16": ((1e-2, 1e-3), (5e-2, 1e-2)),
    "bfloat16": ((5e-2, 1e-2), (1e-1, 5e-2)),
}
_MLM_DTYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float16", "float32",
               "float64", "bool")  # fmt: skip


@dataclass(frozen=True)
class OutputDifference:
    """One output of the known answer against the rerun."""

    name: str
    dtype: str
    exact: bool
    rtol: float
    atol: float
    max_difference: float | None
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class KnownAnswerResult:
    """The rerun of the published example against the published output."""

    ok: bool
    outputs: tuple[OutputDifference, ...]
    exported_on: str
    run_on: str
    problems: tuple[str, ...] = ()

    @property
    def max_difference(self) -> float | None:
        """The largest absolute difference over every output (None when nothing could be compared)."""
        values = [o.max_difference for o in self.outputs if o.max_difference is not None]
        return max(values) if values else None

    def __str__(self) -> str:
        lines = []
        for out in self.outputs:
            bound = "exact" if out.exact else f"rtol {out.rtol:g}, atol {out.atol:g}"
            diff = "n/a" if out.max_difference is None else f"{out.max_difference:.3g}"
            mark = "ok" if out.ok else f"MISMATCH: {out.reason}"
            lines.append(
                f"  known-answer {out.name}: max |difference| {diff} ({out.dtype}, {bound}; exported on "
                f"{self.exported_on}, run on {self.run_on})  {mark}"
            )
        lines += [f"  known-answer problem: {p}" for p in self.problems]
        return "\n".join(lines)


def example_inputs(specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Seeded example inputs: declared shapes with dynamic dimensions at the dry-run's base sizes (batch 1).

    Floats are uniform in [0, 1), uint8 in [0, 256), other integers in [0, 16) (index-like), bools random.

    Raises:
        ConfigurationError: an input's data_type has no numpy dtype (``other``, complex).
    """
    feeds = {}
    for index, spec in enumerate(specs):
        if spec.data_type not in _MLM_DTYPES:
            raise ConfigurationError(
                f"known_answer: input {spec.name!r} has data_type {spec.data_type!r}, which has no portable example.",
                hint="Export without known_answer, or declare the input's data_type.",
            )
        shape = tuple(s if s >= 0 else (1 if d == "batch" else DEFAULT_SIZES.get(d, 1))
                      for s, d in zip(spec.shape, spec.dim_order, strict=True))  # fmt: skip
        rng = np.random.default_rng(SEED + index)
        dtype = np.dtype(spec.data_type)
        if dtype.kind == "f":
            feeds[spec.name] = rng.random(shape, dtype=np.float64).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 256 if dtype == np.uint8 else 16, shape).astype(dtype)
    return feeds


def forward_all(model: Any, feeds: Mapping[str, np.ndarray], device: Any = "cpu") -> tuple[list[np.ndarray], str]:
    """Every output of one forward of ``model`` (torch module or onnxruntime session) on ``feeds``, in order.

    Torch: eval mode, ``torch.inference_mode``, on ``device``; inputs by keyword when there are several and the
    forward names them all, else by position. bfloat16 outputs come back as float32 (exactly).

    Returns:
        The outputs and the original dtype names (comma-separated).

    Raises:
        ProbeError: the forward fails.
    """
    if hasattr(model, "get_inputs") and hasattr(model, "run"):  # onnxruntime
        metas = model.get_inputs()
        names = list(feeds)
        given = {m.name: feeds[m.name] if m.name in feeds else feeds[names[i]] for i, m in enumerate(metas)}
        try:
            results = [np.asarray(r) for r in model.run(None, given)]
        except Exception as exc:
            raise ProbeError(f"onnxruntime failed on the known-answer example: {exc}") from exc
        return results, ",".join(r.dtype.name for r in results)
    return _torch_forward(model, feeds, device)


def _torch_forward(model: Any, feeds: Mapping[str, np.ndarray], device: Any) -> tuple[list[np.ndarray], str]:
    import inspect

    import torch

    if hasattr(model, "module") and type(model).__name__ == "ExportedProgram":
        model = model.module()
    target = torch.device(device)
    restore: Callable[[], None] = lambda: None  # noqa: E731
    if isinstance(model, torch.nn.Module):
        restore = _evaluating(model, target)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(target) for k, v in feeds.items()}
    try:
        parameters = set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError, AttributeError):
        parameters = set()
    by_keyword = len(tensors) > 1 and set(tensors) <= parameters
    try:
        with torch.inference_mode():
            result = model(**tensors) if by_keyword else model(*tensors.values())
    except Exception as exc:
        raise ProbeError(
            f"The model failed on the known-answer example ({_shapes(feeds)}): {exc}",
            hint="Export without known_answer, or give an input_shape the model accepts.",
        ) from exc
    finally:
        restore()
    flat: list[Any] = []
    _flatten(result, flat)
    dtypes = ",".join(str(t.dtype).removeprefix("torch.") for t in flat)
    arrays = [(t.float() if t.dtype == torch.bfloat16 else t).detach().to("cpu").numpy() for t in flat]
    return arrays, dtypes


def _shapes(feeds: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())


def _evaluating(model: Any, target: Any) -> Callable[[], None]:
    """Put a module in eval mode on ``target``; return what puts it back (a caller's model is left as it was)."""
    import torch

    training = model.training
    first = next(iter(model.parameters()), None)
    before = first.device if first is not None else None
    model.to(target)
    switch = not isinstance(model, torch.fx.GraphModule)  # an unlifted ExportedProgram has no train/eval
    if switch:
        model.eval()

    def restore() -> None:
        if switch:
            model.train(training)
        if before is not None and before != target:
            model.to(before)

    return restore


def _flatten(value: Any, out: list[Any]) -> None:
    """Tensors of a forward's result in order: dicts by key order, tuples/lists, dataclasses (as the dry-run)."""
    import dataclasses

    import torch

    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, Mapping):
        for entry in value.values():
            _flatten(entry, out)
    elif isinstance(value, (tuple, list)):
        for entry in value:
            _flatten(entry, out)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            _flatten(getattr(value, item.name), out)


def device_kind(device: Any) -> str:
    """``"cpu"``, ``"cuda"``... of a device string or ``torch.device``."""
    return str(getattr(device, "type", None) or device).split(":")[0]


def write(
    path: Path, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], meta: Mapping[str, str]
) -> None:
    """Write the known-answer file (``input.<name>``, ``output.<name>`` and the order/dtype/device metadata).

    Raises:
        ConfigurationError: the file would exceed :data:`MAX_BYTES`.
    """
    from safetensors.numpy import save_file

    tensors = {f"{INPUT_PREFIX}{k}": np.ascontiguousarray(v) for k, v in inputs.items()}
    tensors.update({f"{OUTPUT_PREFIX}{k}": np.ascontiguousarray(v) for k, v in outputs.items()})
    total = sum(t.nbytes for t in tensors.values())
    if total > MAX_BYTES:
        raise ConfigurationError(
            f"known_answer: the example input and output take {total} bytes, over the {MAX_BYTES}-byte cap.",
            hint="Export without known_answer (the input shape is fixed and large), or make its dimensions dynamic.",
        )
    metadata = {"inputs": json.dumps(list(inputs)), "outputs": json.dumps(list(outputs)), **meta}
    save_file(tensors, str(path), metadata=metadata)


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    """The inputs, outputs (each in the recorded order) and metadata of a known-answer file.

    Raises:
        ConfigurationError: the file is not a known-answer file.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = dict(handle.metadata() or {})
            inputs = {n: handle.get_tensor(INPUT_PREFIX + n) for n in json.loads(meta["inputs"])}
            outputs = {n: handle.get_tensor(OUTPUT_PREFIX + n) for n in json.loads(meta["outputs"])}
    except Exception as exc:  # safetensors raises its own error types, KeyError, JSON errors
        raise ConfigurationError(
            f"'{path}' is not a known-answer file ({type(exc).__name__}: {exc}).",
            hint="Export the model again with known_answer=True.",
        ) from exc
    return inputs, outputs, meta


def tolerance(dtype: str, same_device: bool) -> tuple[float, float] | None:
    """(rtol, atol) for an output dtype; None: compare exactly (integers, bool)."""
    if dtype not in TOLERANCES:
        return None if np.dtype(dtype).kind in "biu" else TOLERANCES["float32"][0 if same_device else 1]
    return TOLERANCES[dtype][0 if same_device else 1]


def compare(path: Path, model: Any, device: Any = "cpu") -> KnownAnswerResult:
    """Rerun ``model`` on the example of the known-answer file ``path`` and compare with the recorded outputs."""
    inputs, expected, meta = read(path)
    produced, _ = forward_all(model, inputs, device)
    exported_on, run_on = meta.get("device", "cpu"), device_kind(device)
    dtypes = meta.get("dtypes", "").split(",")
    checks = []
    for index, (name, want) in enumerate(expected.items()):
        dtype = dtypes[index] if index < len(dtypes) and dtypes[index] else want.dtype.name
        checks.append(_compare_one(name, dtype, want, produced[index] if index < len(produced) else None,
                                   exported_on == run_on))  # fmt: skip
    problems = []
    if len(produced) != len(expected):
        problems.append(f"the model produced {len(produced)} output(s), the known answer records {len(expected)}")
    ok = all(c.ok for c in checks) and not problems
    return KnownAnswerResult(ok, tuple(checks), exported_on, run_on, tuple(problems))


def require(answer: KnownAnswerResult | None, remote: str | None = None) -> None:
    """Refuse a model that does not reproduce its Item's known answer (``predict(verify=True)``).

    Raises:
        ItemValidationError: the Item publishes no known-answer asset (``answer`` is None).
        KnownAnswerMismatchError: the rerun differs from the published output.
    """
    if answer is None:
        raise ItemValidationError(
            f"{f'Item {remote}' if remote else 'The item'} publishes no {ASSET_KEY!r} asset, so the model cannot be "
            "verified against its publisher's output.",
            hint="Drop verify (--verify), or ask for an Item exported with known_answer=True (--known-answer).",
        )
    if not answer.ok:
        raise KnownAnswerMismatchError(
            f"The model does not reproduce the Item's known answer:\n{answer}",
            hint="The weights or the declared pre/post-processing differ from the publisher's: do not use it.",
        )


def _compare_one(name: str, dtype: str, want: np.ndarray, got: np.ndarray | None, same: bool) -> OutputDifference:
    bound = tolerance(dtype, same)
    rtol, atol = bound if bound is not None else (0.0, 0.0)
    if got is None:
        return OutputDifference(
            name, dtype, bound is None, rtol, atol, None, False, "the model produced no such output"
        )
    if got.shape != want.shape:
        reason = f"shape {list(got.shape)} is not the recorded {list(want.shape)}"
        return OutputDifference(name, dtype, bound is None, rtol, atol, None, False, reason)
    if bound is None:
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        worst = float(diff.max()) if diff.size else 0.0
        ok = bool(np.array_equal(got, want))
        reason = (
            "" if ok else f"{int(np.count_nonzero(got != want))} of {want.size} values differ (exact match required)"
        )
        return OutputDifference(name, dtype, True, 0.0, 0.0, worst, ok, reason)
    a, b = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    worst = float(diff.max()) if diff.size else 0.0
    outside = int(np.count_nonzero(diff > atol + rtol * np.abs(b)))
    reason = f"{outside} of {want.size} values differ by more than atol + rtol * |expected|" if outside else ""
    return OutputDifference(name, dtype, False, rtol, atol, worst, outside == 0, reason)


# --- export side ---------------------------------------------------------------------------------------------------


def file_name(model_file: str | os.PathLike[str]) -> str:
    """``<model file name up to its first dot>.known-answer.safetensors`` (``unet.pt2`` -> ``unet.known-answer...``)."""
    return f"{Path(model_file).name.partition('.')[0]}.{ASSET_KEY}.safetensors"


def stage(
    model: Any,
    described: ModelDescription,
    writer: ArtifactWriter | None,
    staged: Mapping[str, Path],
    options: ExportOptions,
    staging: Staging,
) -> tuple[ModelDescription, ArtifactWriter]:
    """Run the model on the example, write the known-answer file into ``staging``, hash it, describe it.

    An in-memory PyTorch model runs as it is; a model file (or an ONNX proto) is loaded from its (staged)
    artifact the way ``check_item`` loads it.

    Returns:
        The description with the known-answer artifact (size and checksum filled in) and the writer whose
        names include it (published with the model, never replacing a file unless ``overwrite``).
    """
    from mlm_export.files import file_mode
    from mlm_export.hashing import hash_file
    from mlm_export.publishing import ArtifactWriter

    opened = _opened_artifact(described)
    feeds = example_inputs(described.inputs)
    device = options.load.device
    results, dtypes = forward_all(_runnable(model, opened, staged, options), feeds, device)
    names = [o.name for o in described.outputs]
    if len(names) != len(results):
        names = [f"output_{i}" for i in range(len(results))]
    name = file_name(opened.path or "model")
    path = staging.path / name
    meta = {"device": device_kind(device), "dtypes": dtypes, "seed": str(SEED)}
    write(path, feeds, dict(zip(names, results, strict=True)), meta)
    os.chmod(path, file_mode())
    digest = hash_file(path)
    artifact = Artifact(
        ASSET_KEY, ROLES, path=str(staging.directory / name), media_type=MEDIA_TYPE,
        title="Known answer: an example input and the model's output on it",
        description="safetensors: input.<mlm:input name> and output.<mlm:output name> tensors; check_item reruns "
        "the model on the inputs and compares its outputs.",
        file_size=digest.size, file_checksum=digest.checksum,
    )  # fmt: skip
    described = described.replace(artifacts=(*described.artifacts, artifact))
    if writer is None:
        return described, ArtifactWriter(staging.directory, (name,), lambda _stage: None, renamable=False)
    return described, replace(writer, names=(name, *writer.names), renamable=False)


def _opened_artifact(described: ModelDescription) -> Artifact:
    """The file a loader opens: the shard index of a sharded checkpoint, else the (first) model artifact."""
    from mlm_export.artifact_set import SHARD_INDEX_KEY

    by_key = {a.key: a for a in described.artifacts}
    if SHARD_INDEX_KEY in by_key:
        index = by_key[SHARD_INDEX_KEY]
        model = next(a for a in described.artifacts if a.is_model)
        return replace(model, path=index.path)
    return next(a for a in described.artifacts if a.is_model)


def _runnable(model: Any, opened: Artifact, staged: Mapping[str, Path], options: ExportOptions) -> Any:
    """The model to run: an in-memory PyTorch model itself, else the artifact loaded as ``check_item`` loads it."""
    if not isinstance(model, (str, os.PathLike)) and type(model).__name__ != "ModelProto":
        return model
    from mlm_export.loading import _loader

    if opened.path is None or opened.artifact_type is None:
        raise ConfigurationError("known_answer: the model has no local file to run.", hint="Export it to a file.")
    path = staged.get(opened.path, Path(opened.path))
    return _loader(opened.artifact_type).load_artifact(
        Path(path), opened.artifact_type, type(options)(load=options.load)
    )
