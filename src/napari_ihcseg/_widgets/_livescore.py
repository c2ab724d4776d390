"""Live scoring: per-nucleus measurements cached once, re-measured only where labels change.

:class:`LiveScore` holds the per-nucleus table of an image (DAB and
hematoxylin optical density, area, centroid). After an edit only the touched
nuclei are measured again, on the bounding box around them; a threshold or
region change re-reads no pixel at all. Classes set by hand (count mode) are
applied after every classification. This keeps the Score widget's table
live on images with thousands of nuclei. No Qt here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from napari_ihcseg.scoring import ScoringConfig, apply_class_overrides, classify, measure_nuclei, summarize
from napari_ihcseg.scoring.regions import Region
from napari_ihcseg.stain import StainVectors


class LiveScore:
    """Per-nucleus measurements of one image, kept up to date cheaply.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    labels : (H, W) ndarray of int
    config : ScoringConfig
        Its stain vectors and pixel size are used for measuring.
    """

    def __init__(self, image: np.ndarray, labels: np.ndarray, config: ScoringConfig) -> None:
        self.image = np.asarray(image)
        self.config = config
        self.stain_vectors: StainVectors = config.resolve_stain_vectors(self.image)
        self.region: Region | None = None
        self.overrides: dict[int, str] = {}
        cells = measure_nuclei(self.image, np.asarray(labels), stains=self.stain_vectors,
                               pixel_size_um=config.pixel_size_um, ring="auto")
        #: ``(gap, width)`` of the DAB ring around nuclei, kept for re-measuring edited nuclei.
        self.ring = cells.attrs["ring"]
        self._cells = cells.set_index("label", drop=False)
        self._cells.index.name = None

    @property
    def n_nuclei(self) -> int:
        return len(self._cells)

    def update(self, labels: np.ndarray, ids: Iterable[int], *, region: tuple[slice, slice] | None = None) -> None:
        """Measure the nuclei ``ids`` again (new, reshaped or gone) from ``labels``.

        ``region``, when given, holds every pixel of those nuclei (a speed-up:
        only it is searched), e.g. the box of an edit that only created or
        deleted nuclei.
        """
        ids = np.array(sorted({int(i) for i in ids if int(i) > 0}), dtype=np.int64)
        if ids.size == 0:
            return
        labels = full = np.asarray(labels)
        r0 = c0 = 0
        if region is not None:
            region = tuple(slice(*sl.indices(n)[:2]) for sl, n in zip(region, labels.shape))
            r0, c0 = region[0].start, region[1].start
            labels = labels[region]
        mask = np.isin(labels, ids)
        keep = self._cells.drop(index=[i for i in ids if i in self._cells.index])
        if mask.any():
            # The box around the nuclei and their DAB ring; neighbours in it are measured and dropped.
            pad = sum(self.ring)
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            box = (slice(max(r0 + rows[0] - pad, 0), r0 + rows[-1] + 1 + pad),
                   slice(max(c0 + cols[0] - pad, 0), c0 + cols[-1] + 1 + pad))
            fresh = measure_nuclei(self.image[box], full[box], stains=self.stain_vectors,
                                   pixel_size_um=self.config.pixel_size_um, ring=self.ring)
            fresh = fresh[np.isin(fresh["label"].to_numpy(), ids)]
            fresh["centroid_y"] += box[0].start
            fresh["centroid_x"] += box[1].start
            fresh.index = fresh["label"].to_numpy()
            keep = pd.concat([keep[fresh.columns], fresh]).sort_index()
        self._cells = keep

    def set_region(self, region: Region | None) -> None:
        """Count only nuclei whose centroid lies in ``region`` (``None``: all)."""
        self.region = region

    def set_overrides(self, overrides) -> None:
        """Classes set by hand (id → ``"positive"``, ``"negative"``, ``"0"`` .. ``"3"``)."""
        self.overrides = dict(overrides or {})

    def set_config(self, config: ScoringConfig) -> bool:
        """Change thresholds, stain or area limits. Returns ``False`` (and keeps the
        old config) when the change needs measuring again (other stain vectors or pixel size)."""
        if (config.stain_vectors != self.config.stain_vectors
                or config.pixel_size_um != self.config.pixel_size_um):
            return False
        self.config = config
        return True

    def cells(self) -> pd.DataFrame:
        """The scored table: measurements, ``in_roi``, ``intensity_class``, ``positive``, ``included``,
        ``class_source``."""
        cells = self._cells.reset_index(drop=True)
        if self.region is None:
            cells["in_roi"] = True
        else:
            cells["in_roi"] = self.region.contains(cells["centroid_y"].to_numpy(), cells["centroid_x"].to_numpy())
        cells = apply_class_overrides(classify(cells, self.config), self.overrides)
        cells.attrs["stain_vectors"] = self.stain_vectors
        return cells

    def result(self) -> tuple[pd.DataFrame, dict]:
        """``(cells, summary)`` for the current labels, thresholds and region."""
        cells = self.cells()
        return cells, summarize(cells, self.config, stain_vectors=self.stain_vectors)
