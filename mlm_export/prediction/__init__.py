"""Run the model an Item publishes on real data (``predict``): bands, grid, scaling, tiles and outputs from the Item.

One concept per module: :mod:`.spec` (what the Item declares), :mod:`.sources` (DATA -> bands on one grid),
:mod:`.expressions`, :mod:`.preprocess` and :mod:`.resize` (the Item's pre-processing), :mod:`.tiling` (windows,
padding, stitching), :mod:`.forward` (one forward), :mod:`.outputs` (COG, GeoJSON/GeoParquet), :mod:`.result_item`
(the result STAC Item) and :mod:`.run` (``predict`` itself).
"""

from __future__ import annotations

from mlm_export.prediction.run import PredictionResult, predict

__all__ = ["PredictionResult", "predict"]
