"""PyTorch adapter: measure an ``nn.Module``, TorchScript module, ``ExportedProgram`` or PyTorch file.

What ends up in the :class:`~mlm_export.description.ModelDescription` is measured, never guessed from names:
parameters are counted on the module, input and output shapes come from a dry-run through
:func:`mlm_export.probing.probe` (which also finds the dynamic dimensions), and data types are the tensors' own.

Files are opened safely: ``torch.load(weights_only=True)`` for checkpoints (a pickled ``nn.Module`` needs
``trust_pickle=True``), ``safetensors`` headers without loading tensors, ``torch.jit.load`` for TorchScript
archives and ``torch.export.load`` for ``.pt2``.

Modules: :mod:`.sources` (identify and open), :mod:`.rebuild` (``model_class``, state_dict fitting),
:mod:`.inputs` (input planning), :mod:`.runner` (device, dry-run, published artifacts), :mod:`.describe`
(the description), :mod:`.formats` and :mod:`.artifacts` (writing). Importing this package imports torch; the
registry in :mod:`mlm_export.adapters` imports it only when a PyTorch source is described.
"""

from __future__ import annotations

from mlm_export.adapters.torch.describe import SUFFIXES, can_describe, describe, measure
from mlm_export.adapters.torch.formats import ARTIFACT_FORMATS
from mlm_export.adapters.torch.inputs import data_type_of
from mlm_export.adapters.torch.runner import load_artifact, run_artifact

__all__ = [
    "ARTIFACT_FORMATS",
    "SUFFIXES",
    "can_describe",
    "data_type_of",
    "describe",
    "load_artifact",
    "measure",
    "run_artifact",
]
