"""``python -m mlm_export``."""

from mlm_export.cli import run

run()
