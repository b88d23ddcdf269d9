"""Lightning callback that exports the trained LightningModule as an MLM STAC Item.

The callback is a thin layer: it gathers override values (``hparams``, an example batch, the dry-run device and
dtype, datamodule facts through :mod:`mlm_export.integrations.torchgeo`) and calls
:func:`mlm_export.export_item` (or :func:`~mlm_export.integrations.torchgeo.export_torchgeo` for torchgeo tasks),
which measures the model. Importing this module imports ``lightning``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch import Callback
from typing_extensions import override

from mlm_export.description import slugify
from mlm_export.errors import ConfigurationError, UntrustedPickleError
from mlm_export.integrations import hyperparameters_from, merge_export_options
from mlm_export.provenance.revisions import checkpoint_version, relink
from mlm_export.provenance.run_collection import (
    check_collection_id,
    join_collection,
    run_collection_id,
    write_run_collection,
)

if TYPE_CHECKING:
    import lightning.pytorch as pl
    import pystac

#: Values of ``on``.
EXPORT_ON: tuple[str, ...] = ("fit_end", "checkpoint")
#: Trainer precision -> dtype of the model inputs. Mixed precision keeps float32 inputs (autocast casts inside the
#: model); "-true" precisions run the whole model, inputs included, in that dtype (bfloat16 is MLM's "other").
PRECISION_DTYPES: dict[str, str] = {
    "64-true": "float64",
    "64": "float64",
    "16-true": "float16",
    "bf16-true": "bfloat16",
}
#: Device types the dry-run can use; a model trained elsewhere (XLA, HPU...) is measured on the CPU.
DRY_RUN_DEVICES = ("cpu", "cuda", "mps")
_SPLIT_ATTRIBUTES = ("train_dataset", "val_dataset", "test_dataset")


class MLMExportCallback(Callback):
    """Export the LightningModule as a validated MLM STAC Item after ``fit`` (or after every checkpoint).

    With a checkpoint on disk, the checkpoint file itself is the ``mlm:model`` asset (roles ``mlm:model``,
    ``mlm:checkpoint``; ``mlm:artifact_type`` ``torch.save``) and the Item is written next to it with the same stem
    (``epoch=0-step=1.ckpt`` -> ``epoch=0-step=1.json``). Without one (``fast_dev_run``, checkpointing off) the
    in-memory module is exported: weights and Item go to ``dirpath`` (default: ``trainer.default_root_dir``).

    What is passed to ``export_item``:

    * ``hparams`` -> ``mlm:hyperparameters`` (JSON-safe, keys matching ``^[0-9a-zA-Z_.-]+$``), plus the trainer
      ``precision``;
    * ``example_input_array`` for the dry-run, else the first batch of ``trainer.datamodule.train_dataloader()``
      (its ``"image"`` entry for dict batches, the first element of tuples), one sample of it;
    * the dry-run device: the module's device (``mlm:accelerator`` is not derived from it: where a dry-run ran says
      nothing about where the model may run);
    * the input dtype from the trainer ``precision`` for in-memory exports (:data:`PRECISION_DTYPES`; mixed
      precision keeps float32); a checkpoint's dtype is the one the adapter rebuilds it in;
    * datamodule facts (bands, value scaling, extent, ``derived_from`` links) and, for torchgeo tasks, everything
      :func:`~mlm_export.integrations.torchgeo.export_torchgeo` gathers;
    * a checkpoint is first loaded with ``weights_only``; when it holds other pickled objects (hyperparameters
      such as class weights or enums), it is loaded again with ``trust_pickle=True`` and a warning, because this
      trainer wrote it during this run. Pass ``trust_pickle=False`` (or ``True``) to decide yourself.

    Args:
        dirpath: where in-memory exports are written (weights and Item JSON).
        on: ``"fit_end"`` (export once, the best checkpoint else the last one) or ``"checkpoint"`` (export every
            checkpoint file ModelCheckpoint writes, each when the next hook runs after it is on disk).
        artifact_format: the weights format of in-memory exports (see :func:`mlm_export.export_item`); a
            checkpoint is always published as it is.
        version_template: with ``on="checkpoint"``, the ``version`` of each checkpoint's Item, with placeholders
            ``{epoch}``, ``{step}`` and ``{stem}`` (default ``epoch={epoch}-step={step}``, read from the
            checkpoint's file name, else the trainer's counters). The Items are linked oldest to newest
            (``predecessor-version``/``successor-version``/``latest-version``) and relinked when ``save_top_k``
            rotates a checkpoint (and its Item) out.
        deprecate: mark every Item but the newest ``deprecated: true`` (``on="checkpoint"``).
        collection: the Collection id of the Items. With ``on="checkpoint"`` the Items of the run form one STAC
            Collection, ``collection.json`` beside the first checkpoint's Item (see
            :mod:`mlm_export.provenance.run_collection`): every Item gets ``collection`` and
            ``root``/``parent``/``collection`` links to it, and the Collection's extent and ``item`` links follow
            the checkpoints as they are saved and rotated out. Default id: ``<logger name>-version_<n>``, else
            the checkpoint directory's name; ``False`` writes no Collection. With ``on="fit_end"`` the Item gets
            the id and a ``collection`` link to ``../collection.json`` (the ``mlm-export catalog`` layout) only when
            that file exists (else neither, with a warning: see :func:`mlm_export.save_item`).
        **export_options: any other :func:`mlm_export.export_item` (or :func:`export_torchgeo`) argument; they
            win over gathered values. Checked here, so a typo fails before training.

    Raises:
        ConfigurationError: ``on`` is not one of :data:`EXPORT_ON`, an export option is unknown, or the version
            template has an unknown placeholder, or ``collection`` is not an id.

    Example:
        >>> trainer = Trainer(callbacks=[MLMExportCallback(bbox=[5.9, 45.8, 10.5, 47.8])])  # doctest: +SKIP
        >>> trainer.fit(model, datamodule=datamodule)  # doctest: +SKIP

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        on: str = "fit_end",
        artifact_format: str | None = None,
        version_template: str | None = None,
        deprecate: bool = False,
        collection: str | bool | None = None,
        **export_options: Any,
    ) -> None:
        if on not in EXPORT_ON:
            raise ConfigurationError(
                f"MLMExportCallback(on={on!r}): `on` must be one of {list(EXPORT_ON)}.",
                hint="Use on='fit_end' to export once after fit, or on='checkpoint' to export every checkpoint.",
            )
        check_export_options(export_options)
        if version_template is not None:
            checkpoint_version(version_template, epoch=0, step=0, stem="check")
        if collection is not None and collection is not False:
            check_collection_id(collection, "MLMExportCallback(collection=...)")
        super().__init__()
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.on = on
        self.artifact_format = artifact_format
        self.version_template = version_template
        self.deprecate = deprecate
        self.collection: str | bool | None = collection
        #: The run's Collection (``on="checkpoint"``): its id and file, fixed at the first checkpoint export.
        self.collection_id: str | None = collection if isinstance(collection, str) else None
        self.collection_path: Path | None = None
        # The callback owns its outputs: a later export of the same run replaces the artifact next to its item.
        self.export_options = {"overwrite": True, **export_options}
        #: Item JSON paths written, oldest first.
        self.exported: list[str] = []
        self._by_checkpoint: dict[str, str] = {}
        self._signatures: dict[str, tuple[int, int]] = {}

    @property
    def last_exported(self) -> str | None:
        """Path of the last Item JSON written (None before the first export)."""
        return self.exported[-1] if self.exported else None

    # -- hooks ---------------------------------------------------------------------------------------------------

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on == "checkpoint" and trainer.is_global_zero:
            self._export_new_checkpoints(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on == "checkpoint" and trainer.is_global_zero:
            self._export_new_checkpoints(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on == "checkpoint":
            # Every rank takes the same branch: ModelCheckpoint shares its paths across ranks.
            if not self._saved_checkpoint_paths(trainer):
                self._export_in_memory(trainer, pl_module)
            elif trainer.is_global_zero:
                self._export_new_checkpoints(trainer, pl_module)
            return
        checkpoint = self._final_checkpoint(trainer)
        if checkpoint is None:
            self._export_in_memory(trainer, pl_module)
        elif trainer.is_global_zero:
            self._export(trainer, pl_module, checkpoint)

    def _export_in_memory(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather the full weights on every rank (sharded strategies need all of them), export on rank 0."""
        module = gathered_module(trainer, pl_module)
        if trainer.is_global_zero:
            self._export(trainer, module, None)

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"exported": list(self.exported), "by_checkpoint": dict(self._by_checkpoint)}
        if self.collection_path is not None:
            state["collection"] = {"id": self.collection_id, "path": str(self.collection_path)}
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.exported = [str(p) for p in state_dict.get("exported", [])]
        self._by_checkpoint = {str(k): str(v) for k, v in state_dict.get("by_checkpoint", {}).items()}
        collection = state_dict.get("collection")
        if isinstance(collection, Mapping) and self.collection is not False:
            self.collection_id = str(collection["id"])
            self.collection_path = Path(str(collection["path"]))

    # -- checkpoints ---------------------------------------------------------------------------------------------

    @staticmethod
    def _saved_checkpoint_paths(trainer: pl.Trainer) -> list[str]:
        """Paths ModelCheckpoint reports (the same on every rank), whether or not this rank sees the files."""
        paths: list[str] = []
        for callback in trainer.checkpoint_callbacks:
            paths.extend(str(p) for p in getattr(callback, "best_k_models", {}) or {})
            paths.extend(str(p) for p in (callback.best_model_path, callback.last_model_path) if p)
        return list(dict.fromkeys(os.path.abspath(p) for p in paths))

    @classmethod
    def _saved_checkpoints(cls, trainer: pl.Trainer) -> list[Path]:
        return [Path(p) for p in cls._saved_checkpoint_paths(trainer) if os.path.isfile(p)]

    @staticmethod
    def _final_checkpoint(trainer: pl.Trainer) -> Path | None:
        callback = trainer.checkpoint_callback
        if callback is None:
            return None
        for candidate in (callback.best_model_path, callback.last_model_path):
            if candidate and os.path.isfile(candidate):
                return Path(candidate)
        return None

    def _export_new_checkpoints(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Export every checkpoint file that is new or rewritten since the last look; drop Items of deleted ones.

        The version links and the Collection are rewritten before the Items of rotated-out checkpoints are
        deleted, so that no link ever points to a missing Item.
        """
        removed = self._forget_rotated_out()
        exported = False
        for checkpoint in self._saved_checkpoints(trainer):
            stat = checkpoint.stat()
            signature = (stat.st_mtime_ns, stat.st_size)
            if self._signatures.get(str(checkpoint)) == signature:
                continue
            self._export(trainer, pl_module, checkpoint)
            self._signatures[str(checkpoint)] = signature
            exported = True
        if removed or exported:
            # The neighbours' links follow the chain: no link to a removed Item, latest-version the newest.
            chain = [p for p in self.exported if p in self._by_checkpoint.values()]
            relink(chain, deprecate=self.deprecate)
            if self.collection_id is not None and self.collection_path is not None:
                write_run_collection(
                    self.collection_path, self.collection_id, chain, schema_dir=self.export_options.get("schema_dir")
                )
        for item_path in removed:
            Path(item_path).unlink(missing_ok=True)
        return exported

    def _forget_rotated_out(self) -> list[str]:
        """Forget the checkpoints ModelCheckpoint deleted (``save_top_k``); the paths of their Items."""
        removed = []
        for checkpoint, item_path in list(self._by_checkpoint.items()):
            if not os.path.isfile(checkpoint):
                del self._by_checkpoint[checkpoint]
                self._signatures.pop(checkpoint, None)
                self.exported = [p for p in self.exported if p != item_path]
                removed.append(item_path)
        return removed

    def _join_run_collection(self, trainer: pl.Trainer, item: pystac.Item, target: Path) -> dict[str, Any]:
        """The Item document of a checkpoint exported with ``on="checkpoint"``, in the run's Collection."""
        document = item.to_dict(include_self_link=False, transform_hrefs=False)
        if self.collection is False:
            return document
        if self.collection_path is None:
            self.collection_path = target.parent / "collection.json"
        if self.collection_id is None:
            logger = trainer.logger
            self.collection_id = run_collection_id(
                getattr(logger, "name", None), getattr(logger, "version", None), target.parent
            )
        return join_collection(document, self.collection_id, self.collection_path)

    # -- export --------------------------------------------------------------------------------------------------

    def _export(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: Path | None) -> Path:
        from mlm_export.stac.writer import save_item, save_run_item

        item: Any = self.export_module(trainer, pl_module, checkpoint)
        save = save_item
        if checkpoint is not None:
            target = checkpoint.with_suffix(".json")
            if self.on == "checkpoint":
                item = self._join_run_collection(trainer, item, target)
                save = save_run_item  # the run's collection.json is written right after the Item
        else:
            directory = self.dirpath or Path(trainer.default_root_dir)
            directory.mkdir(parents=True, exist_ok=True)
            target = directory / f"{item.id}.json"
        save(item, target, overwrite=True)
        path = str(target)
        self.exported = [p for p in self.exported if p != path] + [path]
        if checkpoint is not None:
            self._by_checkpoint[str(checkpoint)] = path
        return target

    def export_module(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: str | os.PathLike[str] | None = None
    ) -> pystac.Item:
        """Build (without saving) the Item of ``pl_module``, or of its ``checkpoint`` file when given.

        Args:
            trainer: the trainer that fitted the module.
            pl_module: the LightningModule.
            checkpoint: a checkpoint file of this module to publish as the model artifact.

        Returns:
            The validated Item.
        """
        gathered = self._gathered_options(trainer, pl_module, checkpoint)
        run = self._exporter(trainer, pl_module, checkpoint, gathered)
        if checkpoint is None or "trust_pickle" in self.export_options:
            return run()
        try:
            return run()
        except UntrustedPickleError:
            # This trainer wrote the file during this run: trusting it is trusting this process's own objects.
            warnings.warn(
                f"'{Path(checkpoint).name}' holds pickled objects beyond tensors; it was written by this trainer, "
                "so it is loaded with trust_pickle=True. Pass trust_pickle=False to MLMExportCallback to refuse.",
                stacklevel=2,
            )
            return run(trust_pickle=True)

    def _gathered_options(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: str | os.PathLike[str] | None
    ) -> dict[str, Any]:
        """The export arguments read from the trainer and module (the user's options win over them later)."""
        user = self.export_options
        gathered: dict[str, Any] = {
            "hyperparameters": {
                **hyperparameters_from(dict(getattr(pl_module, "hparams", {}) or {})),
                "precision": str(trainer.precision),
            },
            "device": _dry_run_device(pl_module),
        }
        if isinstance(self.collection_id, str):
            gathered["collection"] = self.collection_id
        # A checkpoint is rebuilt by the adapter (model_class + load_state_dict keeps the class's own dtype), so the
        # precision's dtype only applies to the in-memory module, which really holds it.
        dtype = PRECISION_DTYPES.get(str(trainer.precision)) if checkpoint is None else None
        if "example_input" not in user and "input_shape" not in user:
            example = _example_input(trainer, pl_module)
            if example is not None:
                gathered["example_input"] = _cast(example, dtype)
            elif dtype is not None:
                gathered["input_dtype"] = dtype
        if checkpoint is not None:
            if "item_id" not in user:
                gathered["item_id"] = slugify(f"{type(pl_module).__name__}-{Path(checkpoint).stem}")
            if self.on == "checkpoint" and "version" not in user:
                gathered["version"] = _checkpoint_version(self.version_template, trainer, Path(checkpoint))
        else:
            gathered["artifact_dir"] = self.dirpath or Path(trainer.default_root_dir)
            if self.artifact_format is not None:
                gathered["artifact_format"] = self.artifact_format
        return gathered

    def _exporter(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        checkpoint: str | os.PathLike[str] | None,
        gathered: dict[str, Any],
    ) -> Callable[..., pystac.Item]:
        """A function running the export (``export_torchgeo`` for torchgeo tasks, else ``export_item``)."""
        from mlm_export.integrations.data import datamodule_overrides
        from mlm_export.integrations.torchgeo import export_torchgeo, is_torchgeo_task

        user = self.export_options
        datamodule = getattr(trainer, "datamodule", None)
        if is_torchgeo_task(pl_module):
            options = merge_export_options(gathered, user)
            return lambda **extra: export_torchgeo(
                pl_module, datamodule=datamodule, checkpoint=checkpoint, **options, **extra
            )
        from mlm_export.api import export_item

        from_data: dict[str, Any] = {}
        if datamodule is not None and any(getattr(datamodule, a, None) is not None for a in _SPLIT_ATTRIBUTES):
            from_data = datamodule_overrides(datamodule)
            from_data.pop("classes", None)
            _drop_unfitting(from_data, _options_example(gathered, user))
        options = merge_export_options(from_data, gathered, user)
        source: Any = pl_module
        if checkpoint is not None:
            source = os.fspath(checkpoint)
            options.setdefault("model_class", type(pl_module))
        return lambda **extra: export_item(source, **options, **extra)


def check_export_options(options: Mapping[str, Any]) -> None:
    """Refuse keyword arguments that neither :func:`export_item` nor :func:`export_torchgeo` takes.

    Raises:
        ConfigurationError: an unknown name (with the closest known ones).
    """
    import difflib
    import inspect

    from mlm_export.api import export_item
    from mlm_export.integrations.torchgeo import export_torchgeo

    known = {
        name
        for function in (export_item, export_torchgeo)
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            raise ConfigurationError(
                f"MLMExportCallback({name}=...): export_item takes no argument {name!r}.",
                hint=f"Did you mean {', '.join(close)}?" if close else "See mlm_export.export_item for its arguments.",
            )


def gathered_module(trainer: Any, pl_module: Any) -> Any:
    """The module with its full weights, gathered by the strategy; call it on every rank.

    ``strategy.lightning_module_state_dict()`` is a collective operation for sharded strategies (FSDP,
    DeepSpeed): every rank must call it, and rank 0 receives the full state. When the gathered tensors differ
    from the module's own (sharded parameters), rank 0 loads them into a copy of the module.
    """
    import copy

    state = trainer.strategy.lightning_module_state_dict()
    if not trainer.is_global_zero:
        return pl_module
    own = pl_module.state_dict()
    if own.keys() == state.keys() and all(own[k].shape == state[k].shape for k in own):
        return pl_module
    import torch

    full = copy.deepcopy(pl_module)
    for name, tensor in state.items():  # set each tensor: the partitioned ones have other shapes than the full ones
        owner_name, _, attribute = name.rpartition(".")
        owner = full.get_submodule(owner_name)
        current = getattr(owner, attribute, None)
        if isinstance(current, torch.nn.Parameter):
            setattr(owner, attribute, torch.nn.Parameter(tensor.detach().clone(), current.requires_grad))
        else:
            setattr(owner, attribute, tensor.detach().clone())
    return full


def _checkpoint_version(template: str | None, trainer: Any, checkpoint: Path) -> str:
    """The version of a checkpoint's Item: ``epoch=``/``step=`` from Lightning's file name, else the trainer's."""
    stem = checkpoint.stem
    epoch = re.search(r"epoch=(\d+)", stem)
    step = re.search(r"step=(\d+)", stem)
    return checkpoint_version(
        template,
        epoch=int(epoch[1]) if epoch else int(trainer.current_epoch),
        step=int(step[1]) if step else int(trainer.global_step),
        stem=stem,
    )


def _options_example(*layers: Mapping[str, Any]) -> Any:
    """The ``example_input`` the last layer that has one gives (None when none does)."""
    found = None
    for layer in layers:
        if layer.get("example_input") is not None:
            found = layer["example_input"]
    return found


def _drop_unfitting(from_data: dict[str, Any], example: Any) -> None:
    """Drop datamodule bands/value_scaling whose count differs from the example's channels (dim 1 of a 4-D input)."""
    shape = getattr(example, "shape", None)
    if shape is None or len(shape) != 4:
        return
    channels = int(shape[1])
    bands = from_data.get("bands")
    scaling = from_data.get("value_scaling")
    if (bands and len(bands) != channels) or (scaling and len(scaling) not in (1, channels)):
        warnings.warn(
            f"The datamodule's bands/value_scaling ({len(bands or scaling)}) do not match the model's {channels} "
            "input channels; they are left out. Pass bands=/value_scaling= to MLMExportCallback.",
            stacklevel=3,
        )
        from_data.pop("bands", None)
        from_data.pop("value_scaling", None)


def _dry_run_device(pl_module: Any) -> str:
    device = getattr(pl_module, "device", None)
    kind = getattr(device, "type", "cpu")
    return str(device) if kind in DRY_RUN_DEVICES else "cpu"


def _first_tensor(batch: Any) -> Any:
    """The model input of a batch: the ``image`` entry of a dict (torchgeo), the first element of a sequence."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        for key in ("image", "input", "inputs", "x"):
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
        return next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    if isinstance(batch, (list, tuple)) and batch:
        return _first_tensor(batch[0])
    return None


def _example_input(trainer: Any, pl_module: Any) -> Any:
    """``example_input_array``, else one sample of the first training batch (None when there is neither)."""
    example = getattr(pl_module, "example_input_array", None)
    if example is not None:
        return example
    datamodule = getattr(trainer, "datamodule", None)
    loader = None
    if datamodule is not None and hasattr(datamodule, "train_dataloader"):
        loader = datamodule.train_dataloader()
    if loader is None:
        loader = getattr(trainer, "train_dataloader", None)
    if loader is None:
        return None
    batch = next(iter(loader), None)
    tensor = _first_tensor(batch)
    if tensor is None:
        return None
    return tensor[:1].detach().clone() if tensor.dim() > 1 else tensor.detach().clone()


def _cast(example: Any, dtype: str | None) -> Any:
    """``example`` with its floating-point tensors cast to ``dtype`` (unchanged when None)."""
    if dtype is None:
        return example
    import torch

    target = getattr(torch, dtype)
    if isinstance(example, torch.Tensor):
        return example.to(target) if example.is_floating_point() else example
    if isinstance(example, Mapping):
        return {k: _cast(v, dtype) for k, v in example.items()}
    if isinstance(example, (list, tuple)):
        return type(example)(_cast(v, dtype) for v in example)
    return example


__all__ = ["EXPORT_ON", "PRECISION_DTYPES", "MLMExportCallback", "check_export_options", "gathered_module"]
