"""The prediction package as a whole: lazy import, and the public name is the function."""

from __future__ import annotations

import subprocess
import sys


def test_import_mlm_export_loads_no_framework_or_raster_library() -> None:
    code = (
        "import sys, mlm_export, mlm_export.cli; mlm_export.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'rasterio', 'rioxarray', 'odc.stac') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_predict_is_the_function_even_after_the_package_is_imported() -> None:
    import mlm_export
    import mlm_export.prediction

    assert callable(mlm_export.predict) and mlm_export.predict is mlm_export.prediction.predict
