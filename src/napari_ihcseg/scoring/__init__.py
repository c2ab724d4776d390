"""IHC scoring: per-nucleus DAB intensity, positive %, H-score, Allred, Ki-67 index.

The entry point is :func:`score_image` (image + instance labels →
:class:`ScoreResult`); :func:`summarize` recomputes the image scores from the
per-nucleus table alone, for live threshold changes, and :class:`LiveScore`
keeps that table current as labels are edited; :func:`write_exports`
writes ``<stem>.cells.csv``, ``<stem>.summary.json`` and a QuPath-importable
``<stem>.nuclei.geojson``. The summary also says how far to trust it:
:mod:`~napari_ihcseg.scoring.confidence` (Wilson intervals, the minimum count,
uncertain calls), :mod:`~napari_ihcseg.scoring.stain_pattern` (is the DAB in
the nuclei?) and :mod:`~napari_ihcseg.scoring.hotspot` (the Ki-67 hot spot).
Definitions and references: ``docs/scoring.md``.
"""

from napari_ihcseg.scoring.export import (
    CELL_COLUMNS,
    Detection,
    export_paths,
    nuclei_feature_collection,
    read_cells_csv,
    read_geojson,
    read_summary_json,
    write_cells_csv,
    write_exports,
    write_geojson,
    write_summary_csv,
    write_summary_json,
)
from napari_ihcseg.scoring.live import LiveScore
from napari_ihcseg.scoring.measure import MEASUREMENT_COLUMNS, measure_nuclei
from napari_ihcseg.scoring.outlines import label_outlines
from napari_ihcseg.scoring.overrides import apply_class_overrides
from napari_ihcseg.scoring.presets import ESTIMATE, PRESETS, ScoringConfig, StainPreset, get_preset
from napari_ihcseg.scoring.regions import (
    Polygon,
    Region,
    region_from_geojson,
    region_from_shapes,
)
from napari_ihcseg.scoring.score import ScoreResult, score_image
from napari_ihcseg.scoring.summary import (
    SUMMARY_KEYS,
    allred_proportion_score,
    asco_cap_interpretation,
    classify,
    intensity_classes,
    summarize,
)

__all__ = [
    "CELL_COLUMNS", "ESTIMATE", "MEASUREMENT_COLUMNS", "PRESETS", "SUMMARY_KEYS",
    "Detection", "LiveScore", "Polygon", "Region", "ScoreResult", "ScoringConfig", "StainPreset",
    "allred_proportion_score", "apply_class_overrides", "asco_cap_interpretation", "classify", "export_paths",
    "get_preset", "intensity_classes", "label_outlines", "measure_nuclei",
    "nuclei_feature_collection", "read_cells_csv", "read_geojson", "read_summary_json",
    "region_from_geojson", "region_from_shapes", "score_image", "summarize",
    "write_cells_csv", "write_exports", "write_geojson", "write_summary_csv", "write_summary_json",
]
