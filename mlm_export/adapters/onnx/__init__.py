"""ONNX adapter: ``onnx.ModelProto``, ``.onnx`` file (+ external data) or exported PyTorch module -> description.

The graph is read with ``onnx.load(path, load_external_data=False)``: reading, checking and describing it never
touches the weights, so static introspection costs the same for 1 MB and 10 GB of external data. The weights are
loaded only by the onnxruntime dry-run, which confirms shapes and dtypes and probes dynamic dimensions through
:func:`mlm_export.probing.probe`. Importing this package imports ``onnx``;
``torch`` is imported only to export a PyTorch module (:mod:`.from_torch`).

Choices made here, once:

* The ``.onnx`` file is the ``mlm:model`` asset (key ``model``, as in the other adapters) with roles ``mlm:model``
  and ``mlm:compiled`` (onnxruntime runs it without a separate model definition), ``mlm:artifact_type``
  ``onnx`` and media type ``application/octet-stream; framework=onnx``: MLM's best practices prefer
  ``application/octet-stream`` with a ``framework`` parameter to custom types, and ``application/onnx`` is not
  registered with IANA.
* Each external-data file is an asset of its own (key ``model-external-data``, or ``model-external-data-<file>``
  when there are several) with roles ``mlm:weights`` and ``weights``, media type ``application/octet-stream`` and no
  artifact type (the schema forbids one without the ``mlm:model`` role).
* ``mlm:framework`` is ``ONNX``. ``mlm:framework_version`` is the version of the onnxruntime that ran the dry-run,
  because that runtime confirmed the shapes; when no dry-run ran, it is the version of the ``onnx`` package that
  read the graph. ``mlm:accelerator`` is left unset: an ONNX file runs on any execution provider, and where the
  dry-run ran (CPU or CUDA) does not bind the model to it.
* IR version, opsets (per domain), producer, model version/domain and the model's ``metadata_props`` go to
  ``mlm:hyperparameters`` under ``onnx.*`` keys; the model's ``doc_string`` becomes the description.
* Parameters count the elements of every floating-point initializer (external ones from their ``dims``, in
  subgraphs too), except BatchNormalization running statistics (its inputs ``input_mean``/``input_var``): the same
  rule as the PyTorch adapter (parameters, not buffers), so a net exported from torch reports the torch count.
  32/64-bit integer, boolean and string initializers (shape constants, indices) are not parameters; 8/4-bit
  integers (quantized weights) are. A BatchNorm the exporter folded
  into the preceding convolution is counted as that convolution's weights. ``memory_size`` is the size in bytes of
  every initializer.
* ``embed_metadata=True`` writes ``metadata_props["mlm"]`` (JSON: name, architecture, tasks, bands, classes,
  description, taken from ``ExportOptions.metadata``) into a *copy* of the model in the artifact directory, and
  that copy is the published artifact. Describing a file with that entry recovers those values.
* Files are written into a hidden staging directory inside the artifact directory and moved into place with
  ``os.replace`` (external data first, then the ``.onnx``), so a failure leaves nothing half-written.

Modules: :mod:`.graph` (static read), :mod:`.runtime` (onnxruntime dry-run, published artifacts),
:mod:`.describe` (the description), :mod:`.embedded` (``metadata_props``), :mod:`.files` (staging and commit),
:mod:`.from_torch` (``torch.onnx.export``), :mod:`.boundary` (error translation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlm_export.adapters.onnx.describe import can_describe, describe, describe_static, measure
from mlm_export.adapters.onnx.runtime import load_artifact, run_artifact
from mlm_export.publishing import Measured, artifact_directory, publish_now

if TYPE_CHECKING:
    from mlm_export.adapters import ExportOptions
    from mlm_export.description import ModelDescription


def measure_torch_module(module: Any, options: ExportOptions) -> Measured:
    """Export ``module`` to ONNX and measure the file (see :func:`.from_torch.measure_torch_module`).

    .. versionadded:: 0.2
    """
    from mlm_export.adapters.onnx.from_torch import measure_torch_module as export_and_measure

    return export_and_measure(module, options)


def describe_torch_module(module: Any, options: ExportOptions) -> ModelDescription:
    """Export ``module`` to ``<artifact_dir>/<slug>.onnx``, publish it and return its description.

    .. versionadded:: 0.1
    """
    return publish_now(
        lambda staging: measure_torch_module(module, options.updated(scratch=lambda: staging.path)),
        artifact_directory(options.artifact.artifact_dir),
        overwrite=options.artifact.overwrite,
    )


__all__ = [
    "can_describe",
    "describe",
    "describe_static",
    "describe_torch_module",
    "load_artifact",
    "measure",
    "measure_torch_module",
    "run_artifact",
]
