"""``python -m mlm_export``."""

from mlm_export.cli import console

console()
