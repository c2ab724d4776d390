"""Growing a nucleus where a person clicked: the "missed nucleus" click of count mode.

:func:`grow_nucleus_at` returns a :class:`~napari_ihcseg.editing.LabelEdit`
that adds one nucleus around a clicked point on empty tissue, computed, not
applied, like every edit of :mod:`napari_ihcseg.editing`. It looks only at a
window of a few nucleus diameters around the click, so a click costs the same
on a 512² tile and on a 4096² field.

How the nucleus is found, in order of preference:

1. **The model's probabilities** (the last run's mask and contour maps): the
   instance step (:func:`~napari_ihcseg.instances.probabilities_to_instances`)
   runs on the window, with the mask threshold lowered to half the mask
   probability at the click (a missed nucleus is one the model was unsure
   of), and the instance under the click is taken.
2. **Hematoxylin + DAB optical density** (colour deconvolution): the region
   connected to the click whose density is at least halfway between the
   background (the window's 20th percentile) and the click's own.
3. A disk of the typical nucleus diameter, when neither says anything (no
   probabilities, no image, or no contrast at the click).

Whatever the method, the nucleus never covers another nucleus and never
reaches farther than :data:`MAX_REACH` diameters from the click; one smaller
than :data:`MIN_AREA_FRACTION` of a typical nucleus becomes the disk.

:func:`compare_counts` checks the nuclei against a person's point counts
(matched, missed and extra nuclei, and the difference in positive index)
with the point matching of the Ki-67 evaluation
(:func:`~napari_ihcseg.metrics.evaluate_points`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .operations import LabelChange, LabelEdit, check_labels, check_new_ids, count_ids, next_free_label

#: Nucleus diameter (pixels) assumed when the labels have too few nuclei to measure it.
DEFAULT_DIAMETER = 12.0
#: Nuclei needed before their median size is trusted as the typical size.
MIN_NUCLEI_FOR_SIZE = 5
#: Half-width of the window looked at, in nucleus diameters.
WINDOW = 1.5
#: A grown nucleus stays within this many diameters of the click.
MAX_REACH = 0.75
#: A grown region smaller than this fraction of a typical nucleus is replaced by the disk.
MIN_AREA_FRACTION = 0.2
#: Below this mask probability at the click, the probabilities say nothing about it.
MIN_CLICK_PROBABILITY = 0.05
#: Least optical-density contrast (click minus background) for the density method.
MIN_OD_CONTRAST = 0.05


def typical_diameter(labels: np.ndarray, *, sizes: np.ndarray | None = None) -> float:
    """Median equivalent diameter of the nuclei in ``labels`` (pixels).

    Parameters
    ----------
    labels : (H, W) ndarray of int
    sizes : ndarray of int, optional
        The pixel count of each nucleus (background left out; zeros are
        ignored), when already known (:meth:`~napari_ihcseg.editing.LabelDiffer.sizes`).

    Returns
    -------
    float
        :data:`DEFAULT_DIAMETER` with fewer than :data:`MIN_NUCLEI_FOR_SIZE` nuclei.

    Examples
    --------
    >>> lab = np.zeros((40, 40), int)
    >>> for k in range(6):
    ...     lab[2 + 6 * k: 6 + 6 * k, 2:6] = k + 1
    >>> round(typical_diameter(lab), 2)  # 4 x 4 squares
    4.51
    """
    if sizes is None:
        dense, sparse = count_ids(check_labels(labels))
        sizes = np.concatenate([dense[1:], np.fromiter(sparse.values(), np.int64, len(sparse))])
    sizes = np.asarray(sizes)
    sizes = sizes[sizes > 0]
    if sizes.size < MIN_NUCLEI_FOR_SIZE:
        return DEFAULT_DIAMETER
    return float(2.0 * math.sqrt(float(np.median(sizes)) / math.pi))


def _disk(shape, centre, radius: float) -> np.ndarray:
    rr, cc = np.ogrid[:shape[0], :shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius ** 2


def _component_at(mask: np.ndarray, point) -> np.ndarray:
    parts, _ = ndi.label(mask)
    k = parts[point]
    return parts == k if k else np.zeros_like(mask)


def _from_probabilities(mp, cp, click, allowed, *, mask_threshold, contour_threshold) -> np.ndarray | None:
    from napari_ihcseg.instances import probabilities_to_instances

    at_click = float(mp[click])
    if not at_click >= MIN_CLICK_PROBABILITY:
        return None
    threshold = min(float(mask_threshold), 0.5 * at_click)
    found = probabilities_to_instances(np.where(allowed, mp, 0).astype(np.float32), cp.astype(np.float32),
                                       mask_threshold=threshold, contour_threshold=contour_threshold,
                                       min_size=1)
    if found[click] == 0:  # the click fell on a boundary pixel: take the nearest instance
        if not found.any():
            return None
        _, (ir, ic) = ndi.distance_transform_edt(found == 0, return_indices=True)
        found = np.where(found == found[ir[click], ic[click]], found, 0)
        return found > 0
    return found == found[click]


def _from_density(rgb, click, allowed, diameter: float, stains) -> np.ndarray | None:
    from napari_ihcseg.stain import H_DAB, deconvolve

    conc = deconvolve(rgb, stains if stains is not None else H_DAB)
    od = ndi.gaussian_filter(conc[..., 0] + np.clip(conc[..., 1], 0, None), 1.0)
    core = _disk(od.shape, click, max(diameter / 4, 1.0))
    value = float(np.median(od[core]))
    background = float(np.percentile(od, 20))
    if value - background < MIN_OD_CONTRAST:
        return None
    region = (od >= background + 0.5 * (value - background)) & allowed
    region[click] = True
    region = _component_at(ndi.binary_fill_holes(region), click)
    opened = ndi.binary_opening(region, structure=ndi.generate_binary_structure(2, 1))
    return _component_at(opened, click) if opened[click] else region


def grow_nucleus_at(labels: np.ndarray, position, *, mask_prob=None, contour_prob=None, image=None,
                    stains=None, diameter: float | None = None, mask_threshold: float = 0.5,
                    contour_threshold: float = 0.5, new_label: int | None = None,
                    areas: np.ndarray | None = None) -> LabelEdit:
    """Add one nucleus around ``position`` on empty tissue.

    Parameters
    ----------
    labels : (H, W) ndarray of int
    position : (row, col)
        The click, in pixels of ``labels`` (rounded).
    mask_prob, contour_prob : (H, W) ndarray of float, optional
        The last run's probability maps, aligned with ``labels``.
    image : (H, W, 3) ndarray of uint8, optional
        The RGB image, for the optical-density method.
    stains : StainVectors, optional
        For the colour deconvolution (Ruifrok–Johnston H-DAB by default).
    diameter : float, optional
        Typical nucleus diameter in pixels (default: :func:`typical_diameter`).
    mask_threshold, contour_threshold : float
        The thresholds the labels were made with.
    new_label : int, optional
        Id of the new nucleus (default: :func:`next_free_label`).
    areas : ndarray of int, optional
        Pixel count per id (index = id), when already known: ``new_label``
        is checked against it, so a click reads no pixel outside its window
        (ids beyond its end count as free).

    Returns
    -------
    LabelEdit
        Action ``"grow"``, creating ``new_label``.

    Raises
    ------
    ValueError
        If the click lies outside the image or on a nucleus, or
        ``new_label`` is not a free id the labels' dtype can hold.

    Examples
    --------
    >>> lab = np.zeros((30, 30), np.int32)
    >>> edit = grow_nucleus_at(lab, (15, 15), diameter=8)
    >>> sorted(edit.change.created), bool(edit.apply(lab)[15, 15] == 1), 30 < edit.n_pixels < 80
    ([1], True, True)
    """
    labels = check_labels(labels)
    r, c = (int(round(float(p))) for p in tuple(position)[-2:])
    h, w = labels.shape
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"the click ({r}, {c}) lies outside the image ({h} x {w})")
    if labels[r, c]:
        raise ValueError(f"there is already a nucleus here (id {int(labels[r, c])})")
    d = float(diameter) if diameter else typical_diameter(labels)
    half = int(math.ceil(WINDOW * d)) + 1
    box = (slice(max(r - half, 0), min(r + half + 1, h)), slice(max(c - half, 0), min(c + half + 1, w)))
    click = (r - box[0].start, c - box[1].start)
    crop = labels[box]
    free = crop == 0
    allowed = free & _disk(crop.shape, click, MAX_REACH * d)

    region = None
    if mask_prob is not None and contour_prob is not None:
        for name, prob in (("mask_prob", mask_prob), ("contour_prob", contour_prob)):
            if np.shape(prob) != labels.shape:
                raise ValueError(f"{name} has shape {np.shape(prob)}, but the labels are {labels.shape}")
        region = _from_probabilities(np.asarray(mask_prob[box], np.float32), np.asarray(contour_prob[box]),
                                     click, allowed, mask_threshold=mask_threshold,
                                     contour_threshold=contour_threshold)
    if region is None and image is not None:
        if np.shape(image)[:2] != labels.shape:
            raise ValueError(f"the image is {np.shape(image)[:2]}, but the labels are {labels.shape}")
        region = _from_density(np.asarray(image[box]), click, allowed, d, stains)
    if region is not None:
        region = region & allowed
    if region is None or region.sum() < MIN_AREA_FRACTION * math.pi * (d / 2) ** 2:
        region = free & _disk(crop.shape, click, d / 2)
    label = int(new_label) if new_label is not None else next_free_label(labels)
    check_new_ids(labels, label, given=new_label is not None, areas=areas)
    new_crop = np.where(region, label, crop).astype(labels.dtype, copy=False)
    return LabelEdit.from_crop("grow", labels, box, new_crop, LabelChange(frozenset({label}), frozenset(), frozenset()))


def compare_counts(labels: np.ndarray, points, positive, *, radius: float,
                   nucleus_positive: dict | None = None) -> dict:
    """Compare the nuclei of ``labels`` with a person's point counts.

    Parameters
    ----------
    labels : (H, W) ndarray of int
    points : array_like, shape (M, 2)
        The counted nuclei, (row, col) in pixels of ``labels``.
    positive : array_like of bool, shape (M,)
    radius : float
        A nucleus centroid and a point within this many pixels match.
    nucleus_positive : dict, optional
        Nucleus id → positive; without it only detection is compared.

    Returns
    -------
    dict
        The figures of :func:`~napari_ihcseg.metrics.evaluate_points`, plus
        ``matched``, ``missed`` (counted, not found), ``extra`` (found, not
        counted) and ``delta_index`` (the nuclei's % positive minus the
        counts', signed; NaN without classes).

    Examples
    --------
    >>> lab = np.zeros((20, 40), np.int32); lab[2:6, 2:6] = 1; lab[2:6, 20:24] = 2
    >>> r = compare_counts(lab, [[3.5, 3.5], [15, 30]], [True, False], radius=3,
    ...                    nucleus_positive={1: True, 2: False})
    >>> r["matched"], r["missed"], r["extra"], r["delta_index"]
    (1, 1, 1, 0.0)
    """
    from napari_ihcseg.metrics import evaluate_points

    labels = check_labels(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    centroids = (np.asarray(ndi.center_of_mass(np.ones(labels.shape, np.float32), labels, ids)).reshape(-1, 2)
                 if ids.size else np.zeros((0, 2)))
    pred_positive = None
    if nucleus_positive is not None:
        pred_positive = np.array([bool(nucleus_positive.get(int(i), False)) for i in ids], bool)
    result = evaluate_points(centroids, pred_positive, points, positive, radius=radius)
    result.update(matched=result["tp"], missed=result["fn"], extra=result["fp"],
                  delta_index=result["pred_pct_positive"] - result["truth_pct_positive"])
    return result
