"""Live scoring: per-nucleus measurements cached once, re-measured only where labels change.

:class:`LiveScore` holds the per-nucleus table of an image (DAB and
hematoxylin optical density, area, centroid). After an edit only the touched
nuclei are measured again, on the bounding box around them; a threshold or
region change re-reads no pixel at all. Classes set by hand (count mode) are
applied after every classification. This keeps the Score widget's table
live on images with thousands of nuclei; the widget only wires it to napari.

Invariant: after any sequence of :meth:`LiveScore.update` calls, the table
equals what :func:`~napari_ihcseg.scoring.measure_nuclei` gives on the whole
current label image (same ring), so the live numbers are the exported ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from napari_ihcseg.scoring.measure import measure_nuclei
from napari_ihcseg.scoring.overrides import apply_class_overrides
from napari_ihcseg.scoring.presets import ScoringConfig
from napari_ihcseg.scoring.regions import Region
from napari_ihcseg.scoring.summary import classify, summarize
from napari_ihcseg.stain import StainVectors


class LiveScore:
    """Per-nucleus measurements of one image, kept up to date cheaply.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        The RGB pixels under ``labels``.
    labels : (H, W) ndarray of int
        0 background, nuclei 1..N (ids need not be consecutive).
    config : ScoringConfig
        Its stain vectors (``"estimate"`` is resolved once, on ``image``) and
        pixel size are used for measuring; its thresholds, region and area
        limits only for classifying, so :meth:`set_config` can change them.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ihcseg.scoring import ScoringConfig
    >>> image = np.full((40, 40, 3), 230, np.uint8)
    >>> image[5:15, 5:15] = (120, 80, 40)  # a brown (DAB) nucleus
    >>> image[25:35, 25:35] = (90, 90, 160)  # a blue (hematoxylin) one
    >>> labels = np.zeros((40, 40), np.int32)
    >>> labels[5:15, 5:15], labels[25:35, 25:35] = 1, 2
    >>> live = LiveScore(image, labels, ScoringConfig())
    >>> cells, summary = live.result()
    >>> cells["positive"].tolist(), summary["n_nuclei"]
    ([1, 0], 2)
    >>> labels[25:35, 25:35] = 0  # delete nucleus 2: only it is measured again
    >>> live.update(labels, [2])
    >>> live.n_nuclei, live.result()[1]["n_nuclei"]
    (1, 1)
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
        """How many nuclei the table holds (in and out of the region)."""
        return len(self._cells)

    def update(self, labels: np.ndarray, ids: Iterable[int], *, region: tuple[slice, slice] | None = None) -> None:
        """Measure the nuclei ``ids`` again (new, reshaped or gone) from ``labels``.

        Parameters
        ----------
        labels : (H, W) ndarray of int
            The whole label image after the edit.
        ids : iterable of int
            The nuclei the edit touched; ids no longer in ``labels`` leave
            the table, ids new to it join it. 0 is ignored.
        region : (slice, slice), optional
            A box holding every pixel of those nuclei (a speed-up: only it
            is searched), e.g. the box of an edit that only created or
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
        """Count only nuclei whose centroid lies in ``region`` (``None``: all); no pixel is read."""
        self.region = region

    def set_overrides(self, overrides) -> None:
        """Classes set by hand (id → ``"positive"``, ``"negative"``, ``"0"`` .. ``"3"``), applied after classifying."""
        self.overrides = dict(overrides or {})

    def set_config(self, config: ScoringConfig) -> bool:
        """Change thresholds, region or area limits without measuring again.

        Returns
        -------
        bool
            ``False`` (and the old config is kept) when the change needs the
            pixels measured again: other stain vectors or another pixel size.
            Build a new :class:`LiveScore` then.
        """
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
