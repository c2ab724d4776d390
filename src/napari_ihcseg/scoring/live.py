"""Live scoring: per-nucleus measurements cached once, re-measured only where labels change.

:class:`LiveScore` holds the per-nucleus table of an image (DAB and
hematoxylin optical density, area, centroid, DAB ring). After an edit only
the touched nuclei, and the neighbours whose DAB ring they may change, are
measured again, on the bounding box around them; a threshold or
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
from scipy import ndimage as ndi

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
        #: id → (rows, cols) bounding box of every nucleus, to find what an edit's neighbours are.
        self._boxes: dict[int, tuple[slice, slice]] = _boxes_of(np.asarray(labels), None, (0, 0))

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
            A box holding every pixel the edit changed (a speed-up). After
            the edit, a nucleus's pixels lie in that box or in its box
            before the edit, so only those boxes are searched; without it,
            the whole image is.
        """
        ids = np.array(sorted({int(i) for i in ids if int(i) > 0}), dtype=np.int64)
        if ids.size == 0:
            return
        full = np.asarray(labels)
        within = None
        if region is not None:
            within = _union([_clip_box(region, full.shape)] + [self._boxes[i] for i in ids if i in self._boxes])
        searched = full if within is None else full[within]
        offset = (0, 0) if within is None else (within[0].start, within[1].start)
        present = _boxes_of(searched, ids, offset)
        # Where pixels changed: the touched nuclei's boxes, before and after the edit.
        changed = [self._boxes[i] for i in ids if i in self._boxes] + list(present.values())
        for i in ids:
            self._boxes.pop(int(i), None)
        self._boxes.update(present)
        keep = self._cells.drop(index=[i for i in ids if i in self._cells.index])
        if changed:
            # A ring pixel is within gap + width of its nucleus and is decided by the labels within
            # gap + width of it: nuclei within twice that of a changed pixel may have a new ring.
            reach = 2 * sum(self.ring)
            near = _grow(_union(changed), reach, full.shape)
            neighbours = {int(i) for i in np.unique(full[near]) if i} - set(present)
            again = sorted(set(present) | {i for i in neighbours if i in self._boxes})
            if again:
                box = _grow(_union([self._boxes[i] for i in again]), reach, full.shape)
                fresh = measure_nuclei(self.image[box], full[box], stains=self.stain_vectors,
                                       pixel_size_um=self.config.pixel_size_um, ring=self.ring)
                fresh = fresh[np.isin(fresh["label"].to_numpy(), again)]
                fresh["centroid_y"] += box[0].start
                fresh["centroid_x"] += box[1].start
                fresh.index = fresh["label"].to_numpy()
                keep = keep.drop(index=[i for i in again if i in keep.index])
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


def _clip_box(box, shape) -> tuple[slice, slice]:
    return tuple(slice(*sl.indices(n)[:2]) for sl, n in zip(box, shape))


def _boxes_of(labels: np.ndarray, ids: np.ndarray | None, offset: tuple[int, int]) -> dict[int, tuple[slice, slice]]:
    """id → bounding box (shifted by ``offset``) of the nuclei of ``labels`` (only ``ids`` if given)."""
    r, c = offset
    if ids is None and labels.size and 0 < int(labels.max()) <= 4 * labels.size:
        return {i + 1: (slice(b[0].start + r, b[0].stop + r), slice(b[1].start + c, b[1].stop + c))
                for i, b in enumerate(ndi.find_objects(labels)) if b is not None}
    flat = np.flatnonzero(labels if ids is None else np.isin(labels, ids))
    if flat.size == 0:
        return {}
    rows, cols = np.divmod(flat, labels.shape[1])
    frame = pd.DataFrame({"id": labels.ravel()[flat].astype(np.int64), "r": rows, "c": cols})
    ext = frame.groupby("id").agg(r0=("r", "min"), r1=("r", "max"), c0=("c", "min"), c1=("c", "max"))
    return {int(i): (slice(int(a) + r, int(b) + r + 1), slice(int(d) + c, int(e) + c + 1))
            for i, a, b, d, e in zip(ext.index, ext["r0"], ext["r1"], ext["c0"], ext["c1"])}


def _union(boxes) -> tuple[slice, slice]:
    return (slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
            slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)))


def _grow(box, pad: int, shape) -> tuple[slice, slice]:
    return tuple(slice(max(sl.start - pad, 0), min(sl.stop + pad, n)) for sl, n in zip(box, shape))
