"""The artifact formats an in-memory PyTorch model can be written in (suffix, artifact type, media type, roles)."""

from __future__ import annotations

from dataclasses import dataclass

from mlm_export.errors import (
    ConfigurationError,
)

#: Values of ``artifact_format`` for an in-memory module.
ARTIFACT_FORMATS: tuple[str, ...] = ("safetensors", "torch.save", "torchscript", "torch.export", "onnx")

MEDIA_PYTORCH = "application/octet-stream; framework=pytorch"

MEDIA_SAFETENSORS = "application/octet-stream; framework=pytorch; application=safetensors"

MEDIA_COMPILED = "application/octet-stream; framework=pytorch; profile=compiled"

ROLES_WEIGHTS: tuple[str, ...] = ("mlm:model", "mlm:weights", "weights")

ROLES_CHECKPOINT: tuple[str, ...] = ("mlm:model", "mlm:checkpoint", "checkpoint")

ROLES_COMPILED: tuple[str, ...] = ("mlm:model", "mlm:compiled")


@dataclass(frozen=True)
class _Format:
    suffix: str
    artifact_type: str
    media_type: str
    roles: tuple[str, ...]
    title: str
    compile_method: str | None = None


_FORMATS: dict[str, _Format] = {
    "safetensors": _Format(".safetensors", "safetensors.torch.save_file", MEDIA_SAFETENSORS, ROLES_WEIGHTS,
                           "weights (safetensors)"),
    "torch.save": _Format(".pt", "torch.save", MEDIA_PYTORCH, ROLES_WEIGHTS, "state_dict (torch.save)"),
    "torchscript": _Format(".torchscript.pt", "torch.jit.save", MEDIA_COMPILED, ROLES_COMPILED, "TorchScript module",
                           "jit"),
    "torch.export": _Format(".pt2", "torch.export.save", MEDIA_COMPILED, ROLES_COMPILED, "ExportedProgram (.pt2)",
                            "aot"),
}  # fmt: skip


def _check_format(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    if fmt not in ARTIFACT_FORMATS:
        raise ConfigurationError(
            f"artifact_format={fmt!r} is not supported by the PyTorch adapter.",
            hint=f"Use one of {', '.join(repr(f) for f in ARTIFACT_FORMATS)}.",
        )
    return fmt
