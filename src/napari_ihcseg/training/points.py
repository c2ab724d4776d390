"""Learning from points: pseudo-instances and a loss mask from one click per nucleus.

Pathologists annotate Ki-67 fields with one point per nucleus inside a
region. The mask + contour model needs pixel targets, so a point sample
(:class:`~napari_ihcseg.data.sample.Sample` with ``points``) is turned into
a *pseudo-labelled* sample: instance labels grown from the points, and a
``region`` that says where those targets are trusted. Everything else is
ignored by the loss (the crop's ``valid`` mask), so a point never becomes a
mask as it is, and an unannotated nucleus is never taught as background.

Two ways of growing a nucleus from its point (:attr:`PointTargetConfig.method`):

``"watershed"``
    Marker-controlled watershed on the smoothed hematoxylin + DAB optical
    density, one marker (a small disk) per point, inside a foreground whose
    threshold is set per point halfway between the density at the point and
    the pale quarter of its surroundings (a ring 0.6–1 diameter away, within
    its Voronoi cell; a point without contrast takes the median threshold),
    and bounded by ``max_radius`` diameters from the point. Touching
    nuclei are separated along density valleys (the watershed lines). A
    nucleus too small to be plausible falls back to the disk.
``"disk"``
    A disk of ``disk_radius`` diameters around each point, cut along the
    Voronoi edges between neighbouring points (the separation of
    Qu et al. 2019); the shape is not looked at, so the ring between the
    disk and ``background_distance`` diameters is ignored.

Either way, a round of **self-training** (``self_training=True``) can
refine the pseudo-nuclei with the model being fine-tuned: a nucleus that the
model's own segmentation (``detections``, made before training with its
tuned instance settings) puts around exactly one point replaces that
point's grown pseudo-nucleus, outline and all. A detection holding two or
more points (touching nuclei the model merged) is not trusted: those points
keep their grown pseudo-nuclei, which part along density valleys, and a
point the model missed (a pale nucleus) keeps its grown one too. So the
model is taught the nuclei it misses and the splits it fails to make,
without being pulled away from the outlines it already draws well.

In all cases, a pixel outside every pseudo-nucleus is trusted background only
where the annotation is complete (inside the region), at least
``ignore_band`` pixels from a pseudo-nucleus, and where its hematoxylin is
pale: dark hematoxylin without a point may be an unannotated (stromal or
inflammatory) nucleus and is ignored. Brown cytoplasm has little
hematoxylin, so it stays background: the model learns that DAB alone does
not make a nucleus.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_ihcseg.metrics.points import values_at_points

POINT_TARGET_METHODS = ("watershed", "disk")


@dataclass(frozen=True)
class PointTargetConfig:
    """How point annotations become training targets.

    Parameters
    ----------
    method : {"watershed", "disk"}
        How a pseudo-nucleus is grown from its point (see the module notes).
    nucleus_diameter : float
        Typical nucleus diameter in pixels at the training scale (the Ki-67
        readers resample their sets to it: about 24 px, MoNuSeg at 40x).
    max_radius : float
        A pseudo-nucleus stays within this many diameters of its point.
    disk_radius : float
        Radius of the ``"disk"`` method's nuclei, and of the fallback disk,
        in diameters.
    background_distance : float
        With ``"disk"``, pixels nearer than this many diameters to a point
        (outside its disk) are ignored.
    ignore_band : int
        Pixels just outside a pseudo-nucleus (its outline is uncertain) that
        the loss ignores.
    dark_fraction : float
        Hematoxylin darker than this fraction of the median at the negative
        points marks a possible unannotated nucleus (ignored, not background).
    self_training : bool
        Replace a point's pseudo-nucleus by the model's own nucleus when that
        nucleus holds this point and no other (see the module notes); the
        trainer segments each point sample with the model it starts from.
    """

    method: str = "watershed"
    nucleus_diameter: float = 24.0
    max_radius: float = 0.75
    disk_radius: float = 0.4
    background_distance: float = 1.0
    ignore_band: int = 2
    dark_fraction: float = 0.6
    self_training: bool = False

    def __post_init__(self) -> None:
        if self.method not in POINT_TARGET_METHODS:
            raise ValueError(f"PointTargetConfig.method must be one of {', '.join(POINT_TARGET_METHODS)}, "
                             f"got {self.method!r}")
        for name in ("nucleus_diameter", "max_radius", "disk_radius", "background_distance", "dark_fraction"):
            if not 0 < float(getattr(self, name)) < float("inf"):
                raise ValueError(f"PointTargetConfig.{name} must be positive and finite, "
                                 f"got {getattr(self, name)}")
        if not isinstance(self.self_training, bool):
            raise TypeError(f"PointTargetConfig.self_training must be True or False, got {self.self_training!r}")
        if int(self.ignore_band) < 0:
            raise ValueError(f"PointTargetConfig.ignore_band must be 0 or more, got {self.ignore_band}")

    def to_dict(self) -> dict:
        return asdict(self)


def _optical_densities(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed hematoxylin + DAB, and hematoxylin, optical density."""
    from napari_ihcseg.stain import deconvolve

    conc = np.clip(deconvolve(image), 0, None)
    hema = ndi.gaussian_filter(conc[..., 0].astype(np.float32), 1.0)
    both = hema + ndi.gaussian_filter(conc[..., 1].astype(np.float32), 1.0)
    return both, hema


def _nearest_point(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel positions of the points, and per pixel the distance to and id (1..N) of the nearest point."""
    rc = np.clip(np.rint(points).astype(np.intp), 0, np.asarray(shape) - 1)
    seeds = np.zeros(shape, np.int32)
    seeds[rc[:, 0], rc[:, 1]] = np.arange(1, len(rc) + 1)
    dist, (ri, ci) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    return rc, dist.astype(np.float32), seeds[ri, ci]


def _disk_labels(dist: np.ndarray, nearest: np.ndarray, radius: float) -> np.ndarray:
    return np.where(dist <= radius, nearest, 0).astype(np.int32)


def _label_percentile(values: np.ndarray, labels: np.ndarray, n: int, q: float) -> np.ndarray:
    """The ``q``-th percentile of ``values`` per label 1..n (NaN for a label without pixels)."""
    keep = labels > 0
    lab, val = labels[keep], values[keep]
    order = np.lexsort((val, lab))
    lab, val = lab[order], val[order]
    counts = np.bincount(lab, minlength=n + 1)[1:]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full(n, np.nan, np.float32)
    has = counts > 0
    out[has] = val[starts[has] + np.floor(q / 100 * (counts[has] - 1)).astype(np.intp)]
    return out


def _watershed_labels(od: np.ndarray, rc: np.ndarray, dist: np.ndarray, nearest: np.ndarray,
                      config: PointTargetConfig) -> np.ndarray:
    from skimage.segmentation import watershed

    d = config.nucleus_diameter
    n = len(rc)
    seed = max(1.5, 0.15 * d)
    centre = np.where(dist <= seed, nearest, 0)
    ring = np.where((dist > 0.6 * d) & (dist <= 1.0 * d), nearest, 0)
    at_point = np.asarray(ndi.median(od, centre, np.arange(1, n + 1)), np.float32)
    # The pale quarter of the surroundings: nuclei crowd the ring in dense tumour.
    around = _label_percentile(od, ring, n, 25.0)
    around = np.where(np.isfinite(around), around, np.nanmedian(around) if np.isfinite(around).any() else 0.0)
    cut = around + 0.5 * (at_point - around)
    good = at_point > around
    # No contrast at a point (a pale nucleus among dark ones): the median cut of the others.
    cut = np.where(good, cut, np.median(cut[good]) if good.any() else np.inf)
    cut = np.concatenate([[np.inf], cut]).astype(np.float32)
    foreground = (od >= cut[nearest]) & (dist <= config.max_radius * d)
    markers = np.where(dist <= seed, nearest, 0).astype(np.int32)
    foreground |= markers > 0
    labels = watershed(-od, markers, mask=foreground).astype(np.int32)
    # Implausibly small pseudo-nuclei (a pale nucleus, a point off its nucleus): the disk instead.
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    small = areas < np.pi * (0.25 * d) ** 2
    small[0] = False
    if small.any():
        disk = _disk_labels(dist, nearest, config.disk_radius * d)
        replace_px = small[disk] & (disk > 0) & ((labels == 0) | small[labels])
        labels[small[labels]] = 0
        labels[replace_px] = disk[replace_px]
    return labels


def adopt_detections(labels: np.ndarray, detections: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pseudo-nuclei with every unambiguous detected nucleus adopted in place of its point's.

    Parameters
    ----------
    labels : (H, W) int
        Pseudo-nucleus ``i + 1`` for point ``i``, as grown from the points.
    detections : (H, W) int
        A segmentation of the same image (0 background, nuclei 1..M).
    points : (N, 2) float
        The points, ``(row, col)``.

    Returns
    -------
    (H, W) int32
        ``labels`` where each detected nucleus that holds exactly one point
        (the pixel under it) takes that point's id over all its pixels, and
        the point's grown pseudo-nucleus is dropped. Detections with no
        point, or with several, change nothing.

    Examples
    --------
    >>> import numpy as np
    >>> grown = np.array([[1, 1, 0, 2, 2, 0]])
    >>> detected = np.array([[0, 3, 3, 3, 0, 0]])      # holds both points: merged, not trusted
    >>> adopt_detections(grown, detected, np.array([[0.0, 1.0], [0.0, 3.0]])).tolist()
    [[1, 1, 0, 2, 2, 0]]
    >>> detected = np.array([[0, 0, 0, 5, 5, 5]])      # holds point 2 only
    >>> adopt_detections(grown, detected, np.array([[0.0, 1.0], [0.0, 3.0]])).tolist()
    [[1, 1, 0, 2, 2, 2]]
    """
    labels = np.asarray(labels)
    detections = np.asarray(detections)
    if detections.shape != labels.shape:
        raise ValueError(f"detections have shape {detections.shape}, the pseudo-labels {labels.shape}")
    out = labels.astype(np.int32, copy=True)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) == 0 or not detections.any():
        return out
    under = values_at_points(detections, points).astype(np.intp)
    held = np.bincount(under, minlength=int(detections.max()) + 1)
    alone = np.flatnonzero((under > 0) & (held[under] == 1))
    if len(alone) == 0:
        return out
    owner = np.zeros(len(held), np.int32)
    owner[under[alone]] = alone + 1
    out[np.isin(out, alone + 1)] = 0
    adopted = owner[detections]
    return np.where(adopted > 0, adopted, out).astype(np.int32)


def point_targets(image: np.ndarray, points: np.ndarray, region: np.ndarray | None = None,
                  config: PointTargetConfig = PointTargetConfig(),
                  point_classes: np.ndarray | None = None,
                  detections: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-instance labels and the pixels where they are trusted.

    Parameters
    ----------
    image : (H, W, 3) uint8
        The IHC (or H&E) image the points were placed on.
    points : (N, 2) float
        One ``(row, col)`` per nucleus, near its centre.
    region : (H, W) bool, optional
        Where every nucleus is annotated; outside it nothing is trusted.
    config : PointTargetConfig
    point_classes : (N,) int, optional
        1 positive, 0 negative: the negative points set the hematoxylin
        level of a nucleus (all points when none is negative).
    detections : (H, W) int, optional
        The model's own nuclei on ``image``; with ``config.self_training``
        they refine the pseudo-nuclei (:func:`adopt_detections`).

    Returns
    -------
    labels : (H, W) int32
        Pseudo-nucleus ``i + 1`` for point ``i`` (0 elsewhere; a point may
        end up with no pixel when a neighbour takes them all).
    trusted : (H, W) bool
        Where the loss counts: the pseudo-nuclei and the background that the
        module notes describe.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.full((48, 48, 3), 235, np.uint8)
    >>> yy, xx = np.mgrid[:48, :48]
    >>> image[(yy - 24) ** 2 + (xx - 20) ** 2 <= 36] = (70, 60, 140)
    >>> labels, trusted = point_targets(image, np.array([[24.0, 20.0]]), config=PointTargetConfig(
    ...     nucleus_diameter=12))
    >>> int(labels[24, 20]), int(labels[24, 30]), bool(trusted[24, 20]), bool(trusted[5, 5])
    (1, 0, True, True)
    """
    image = np.asarray(image)
    shape = image.shape[:2]
    points = np.asarray(points, np.float64).reshape(-1, 2)
    region = np.ones(shape, bool) if region is None else np.asarray(region, bool)
    od, hema = _optical_densities(image)
    if len(points) == 0:
        labels = np.zeros(shape, np.int32)
        dist = np.full(shape, np.inf, np.float32)
        rc = np.zeros((0, 2), np.intp)
    else:
        rc, dist, nearest = _nearest_point(points, shape)
        d = config.nucleus_diameter
        if config.method == "disk":
            labels = _disk_labels(dist, nearest, config.disk_radius * d)
        else:
            labels = _watershed_labels(od, rc, dist, nearest, config)
        if config.self_training:
            if detections is None:
                raise ValueError("PointTargetConfig.self_training needs the model's detections on the image")
            labels = adopt_detections(labels, detections, points)
    nuclei = labels > 0
    trusted = region & nuclei
    near = ndi.binary_dilation(nuclei, iterations=config.ignore_band) if config.ignore_band else nuclei
    background = region & ~near
    if config.method == "disk" and len(points):
        background &= dist > config.background_distance * config.nucleus_diameter
    if len(rc):
        negative = rc if point_classes is None or not np.any(np.asarray(point_classes) == 0) else \
            rc[np.asarray(point_classes) == 0]
        level = float(np.median(hema[negative[:, 0], negative[:, 1]]))
        dark = ndi.binary_dilation(hema >= config.dark_fraction * level, iterations=max(1, config.ignore_band))
        background &= ~(dark & ~nuclei)
    return labels, trusted | background


def is_point_sample(sample) -> bool:
    """Whether a sample is annotated by points only (no labels, no mask)."""
    return sample.points is not None and sample.labels is None and sample.mask is None


def pseudo_label_sample(sample, config: PointTargetConfig = PointTargetConfig(), detections=None):
    """A point sample with pseudo-instance ``labels``; its ``region`` becomes the trusted pixels.

    Samples without points are returned unchanged; so are samples that
    already have labels or a mask (the points then only describe them).
    ``detections`` (the model's nuclei on the sample's image) are needed
    with ``config.self_training``.
    """
    from napari_ihcseg.data.sample import Sample

    if not is_point_sample(sample):
        return sample
    labels, trusted = point_targets(sample.image, sample.points, sample.region, config, sample.point_classes,
                                    detections)
    return Sample(sample.image, labels, name=sample.name, source=sample.source, stain=sample.stain,
                  classes=sample.classes, group=sample.group, points=sample.points,
                  point_classes=sample.point_classes, region=trusted)


__all__ = ["POINT_TARGET_METHODS", "PointTargetConfig", "adopt_detections", "is_point_sample", "point_targets",
           "pseudo_label_sample"]
