"""Per-nucleus measurements, computed for all nuclei at once.

Every statistic is a weighted :func:`numpy.bincount` over the label image, so
the cost is a few passes over the pixels whatever the number of nuclei. Mean
stain concentrations use the linearity of colour deconvolution: the mean of
the per-pixel concentrations equals the deconvolution of the mean per-pixel
optical density, so only three RGB optical-density sums are accumulated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_ihcseg.stain import H_DAB, OD_LUT, StainVectors

#: Columns of :func:`measure_nuclei`, in order.
MEASUREMENT_COLUMNS = ("label", "centroid_y", "centroid_x", "area_px", "area_um2",
                       "hematoxylin_od_mean", "dab_od_mean")


def check_image_labels(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an RGB ``uint8`` image and a matching integer label image."""
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be RGB of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be 8-bit RGB (uint8), got dtype {image.dtype}")
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D integer image, got shape {labels.shape}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels of shape {labels.shape} do not match the image of shape "
                         f"{image.shape[:2]}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers (0 background, 1..N nuclei), got dtype {labels.dtype}")
    return image, labels


def measure_nuclei(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    stains: StainVectors = H_DAB,
    pixel_size_um: float | None = None,
    ring: tuple[int, int] | str | None = None,
) -> pd.DataFrame:
    """Measure position, size and mean stain optical densities of each nucleus.

    Parameters
    ----------
    image : (H, W, 3) array of uint8
        RGB bright-field image.
    labels : (H, W) array of int
        Instance labels: 0 background, positive integers for nuclei. Labels
        need not be consecutive; negative values are not allowed.
    stains : StainVectors
        Colour-deconvolution vectors.
    pixel_size_um : float, optional
        Pixel side in µm; ``area_um2`` is NaN when it is not given.
    ring : (int, int) or "auto", optional
        Also measure ``dab_od_ring``, the mean DAB OD in a ring
        ``(gap, width)`` pixels around each nucleus, for the stain-pattern
        check (:mod:`napari_ihcseg.scoring.stain_pattern`); ``"auto"`` takes
        :func:`~napari_ihcseg.scoring.stain_pattern.ring_for` of the nuclei's
        areas. The ring used is ``cells.attrs["ring"]``.

    Returns
    -------
    cells : pandas.DataFrame
        One row per label present, sorted by label, with the columns
        :data:`MEASUREMENT_COLUMNS` (and ``dab_od_ring`` with ``ring``).
        Centroids are in pixel-index coordinates (the centre of pixel ``(r, c)`` is ``(r, c)``), as in napari and
        scikit-image. Optical densities follow QuPath's convention.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ihcseg.stain import compose
    >>> c = np.zeros((8, 8, 3), np.float32); c[2:4, 2:4, 1] = 0.5
    >>> lab = np.zeros((8, 8), np.int32); lab[2:4, 2:4] = 7
    >>> cells = measure_nuclei(compose(c), lab)
    >>> cells[["label", "area_px", "centroid_y"]].to_numpy().tolist()
    [[7.0, 4.0, 2.5]]
    >>> round(float(cells.dab_od_mean[0]), 2)
    0.5
    """
    image, labels = check_image_labels(image, labels)
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(f"pixel_size_um must be a positive number, got {pixel_size_um}")
    if labels.dtype == np.uint64 and labels.size and int(labels.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"label values above {np.iinfo(np.int64).max} are not supported, "
                         f"found {int(labels.max())}; relabel the nuclei (e.g. skimage.segmentation.relabel_sequential)")
    n_fg = int(np.count_nonzero(labels))
    if n_fg == 0:
        return _with_ring(_frame(np.zeros(0, np.int64), *(np.zeros(0) for _ in range(6))),
                          image, labels, stains, ring)
    h, w = labels.shape
    if n_fg > labels.size // 4:
        # Dense: whole-image passes (background in bin 0) beat gathering pixels.
        lab = labels.reshape(-1).astype(np.int64)
        rows = np.repeat(np.arange(h, dtype=np.float64), w)
        cols = np.tile(np.arange(w, dtype=np.float64), h)
        channels = [image[..., ch].reshape(-1) for ch in range(3)]
    else:
        rr, cc = np.nonzero(labels)
        lab = labels[rr, cc].astype(np.int64)
        rows, cols = rr.astype(np.float64), cc.astype(np.float64)
        pixels = image[rr, cc]
        channels = [pixels[:, ch] for ch in range(3)]
    if int(lab.min()) < 0:
        raise ValueError(f"labels must be non-negative, found {int(lab.min())}")

    if int(lab.max()) <= 4 * lab.size + 1024:
        index, bin_labels = lab, None       # bins are the labels themselves
    else:  # sparse, very large label values: compact them first
        bin_labels, index = np.unique(lab, return_inverse=True)
    n_bins = int(index.max()) + 1
    counts = np.bincount(index, minlength=n_bins)
    present = np.flatnonzero(counts)
    label_ids = present if bin_labels is None else bin_labels[present]
    present, label_ids = present[label_ids != 0], label_ids[label_ids != 0]
    area = counts[present].astype(np.float64)

    def mean_of(values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=n_bins)[present] / area

    cy, cx = mean_of(rows), mean_of(cols)
    od_mean = np.stack([mean_of(OD_LUT[values]) for values in channels], axis=1)
    conc = od_mean @ np.linalg.inv(stains.matrix)
    area_um2 = area * float(pixel_size_um) ** 2 if pixel_size_um is not None else np.full_like(area, np.nan)
    cells = _frame(label_ids.astype(np.int64), cy, cx, area, area_um2, conc[:, 0], conc[:, 1])
    return _with_ring(cells, image, labels, stains, ring)


def _with_ring(cells: pd.DataFrame, image, labels, stains, ring) -> pd.DataFrame:
    if ring is None:
        return cells
    from napari_ihcseg.scoring.stain_pattern import check_ring, ring_dab_od, ring_for

    if isinstance(ring, str):
        if ring != "auto":
            raise ValueError(f"ring must be (gap, width) in pixels or 'auto', got {ring!r}")
        ring = ring_for(cells["area_px"].to_numpy())
    ring = check_ring(ring)
    cells["dab_od_ring"] = ring_dab_od(image, labels, cells["label"].to_numpy(), ring=ring, stains=stains)
    cells.attrs["ring"] = ring
    return cells


def _frame(label, cy, cx, area, area_um2, hema, dab) -> pd.DataFrame:
    return pd.DataFrame({
        "label": np.asarray(label, np.int64),
        "centroid_y": np.asarray(cy, np.float64),
        "centroid_x": np.asarray(cx, np.float64),
        "area_px": np.asarray(area, np.int64),
        "area_um2": np.asarray(area_um2, np.float64),
        "hematoxylin_od_mean": np.asarray(hema, np.float64),
        "dab_od_mean": np.asarray(dab, np.float64),
    })
