"""Score one image: measure, classify and summarise its nuclei."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_ihcseg.scoring.classifier import nucleus_features
from napari_ihcseg.scoring.measure import check_image_labels, measure_nuclei
from napari_ihcseg.scoring.presets import ScoringConfig
from napari_ihcseg.scoring.regions import Region, as_region
from napari_ihcseg.scoring.summary import REGION_MISSES_IMAGE, classify, summarize
from napari_ihcseg.stain import StainVectors


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """The scores of one image.

    Attributes
    ----------
    cells : pandas.DataFrame
        One row per nucleus: ``label``, ``centroid_y``, ``centroid_x``,
        ``area_px``, ``area_um2``, ``hematoxylin_od_mean``, ``dab_od_mean``,
        ``intensity_class``, ``positive``, ``in_roi`` and ``included`` (inside
        the region and the area limits and not rejected by a classifier,
        i.e. counted in the summary), ``dab_od_ring`` (DAB around the
        nucleus, for the stain-pattern check) and, with a classifier in the
        config, its features (:data:`~napari_ihcseg.scoring.classifier.FEATURES`).
    summary : dict
        The image scores (see ``docs/scoring.md``).
    config : ScoringConfig
        The configuration used.
    stain_vectors : StainVectors
        The vectors used (estimated ones when the config asked for it).
    """

    cells: pd.DataFrame
    summary: dict
    config: ScoringConfig
    stain_vectors: StainVectors = field(repr=False)

    def rescore(self, config: ScoringConfig | None = None, **changes) -> ScoreResult:
        """Re-classify and re-summarise with new thresholds or area limits.

        Cheap (no pixel is read again), for live threshold changes. A new
        ``pixel_size_um`` recomputes ``area_um2`` from ``area_px``. Changing
        the stain vectors needs :func:`score_image` again.

        Examples
        --------
        >>> import numpy as np
        >>> from napari_ihcseg.stain import compose
        >>> c = np.zeros((6, 6, 3), np.float32); c[1:3, 1:3, 1] = 0.3
        >>> lab = np.zeros((6, 6), np.int32); lab[1:3, 1:3] = 1
        >>> result = score_image(compose(c), lab, stain="er")
        >>> result.summary["n_positive"], result.rescore(thresholds=(0.35, 0.5, 0.7)).summary["n_positive"]
        (1, 0)
        """
        config = (config or self.config).replace(**changes) if changes else (config or self.config)
        if isinstance(config.stain_vectors, StainVectors) and config.stain_vectors != self.stain_vectors:
            raise ValueError("the stain vectors changed; call score_image again to re-measure")
        cells = self.cells
        if config.pixel_size_um != self.config.pixel_size_um:
            cells = cells.copy()
            area = cells["area_px"].to_numpy(np.float64)
            cells["area_um2"] = (area * float(config.pixel_size_um) ** 2 if config.pixel_size_um is not None
                                 else np.full_like(area, np.nan))
        cells = classify(cells, config)
        return ScoreResult(cells, summarize(cells, config, stain_vectors=self.stain_vectors),
                           config, self.stain_vectors)


def score_image(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    config: ScoringConfig | None = None,
    stain: str | None = None,
    thresholds=None,
    roi=None,
    pixel_size_um: float | None = None,
) -> ScoreResult:
    """Score the nuclei of an IHC image.

    Parameters
    ----------
    image : (H, W, 3) array of uint8
        RGB bright-field image (hematoxylin and DAB).
    labels : (H, W) array of int
        Nucleus instance labels, 0 background.
    config : ScoringConfig, optional
        Everything that decides the score; ``stain``, ``thresholds`` and
        ``pixel_size_um`` given here override its fields. Default: Ki-67.
    stain : {"er", "pr", "ki67"}, optional
        The stain, which chooses the preset thresholds.
    thresholds : (float, float, float), optional
        DAB OD cuts of 1+, 2+, 3+; giving them drops ``config``'s classifier.
    roi : Region, path, or napari Shapes data, optional
        Only nuclei whose centroid lies inside count (GeoJSON file path, a
        list of ``(N, 2)`` ``(row, col)`` vertex arrays, or a :class:`Region`).
    pixel_size_um : float, optional
        Pixel size, for ``area_um2`` and µm² area limits.

    Returns
    -------
    ScoreResult

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ihcseg.stain import compose
    >>> c = np.zeros((10, 10, 3), np.float32)
    >>> c[..., 0] = 0.3; c[1:4, 1:4, 1] = 0.5      # one DAB 2+ nucleus
    >>> lab = np.zeros((10, 10), np.int32); lab[1:4, 1:4] = 1; lab[6:9, 6:9] = 2
    >>> s = score_image(compose(c), lab, stain="er").summary
    >>> s["positive_percent"], s["h_score"], s["allred_total_score"], s["interpretation"]
    (50.0, 100.0, 6, 'positive')
    """
    image, labels = check_image_labels(image, labels)
    config = config or ScoringConfig()
    changes = {}
    if stain is not None:
        changes["stain"] = stain
    if thresholds is not None:
        changes["thresholds"] = tuple(thresholds)
    if pixel_size_um is not None:
        changes["pixel_size_um"] = pixel_size_um
    if changes:
        config = config.replace(**changes)
    region: Region | None = as_region(roi)

    vectors = config.resolve_stain_vectors(image)
    cells = measure_nuclei(image, labels, stains=vectors, pixel_size_um=config.pixel_size_um, ring="auto")
    if config.classifier is not None:
        cells = nucleus_features(image, labels, cells, stains=vectors)
    cells["in_roi"] = (True if region is None
                       else region.contains(cells["centroid_y"].to_numpy(), cells["centroid_x"].to_numpy()))
    cells = classify(cells, config)
    cells.attrs["stain_vectors"] = vectors
    if region is not None and not region.covers_a_pixel_of(np.shape(labels)[:2]):
        cells.attrs[REGION_MISSES_IMAGE] = "{1}x{0}".format(*np.shape(labels)[:2])
    return ScoreResult(cells, summarize(cells, config, stain_vectors=vectors), config, vectors)
