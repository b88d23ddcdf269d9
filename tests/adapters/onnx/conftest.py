"""Fixtures of the ONNX adapter tests."""

from onnx_truth import _quiet_extent  # noqa: F401 - autouse fixture, registered by importing it here
