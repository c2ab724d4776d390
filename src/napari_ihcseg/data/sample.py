"""One annotated image for training or evaluation: :class:`Sample`, and the split by image.

Every reader of training data (the training-pair folders of
:mod:`napari_ihcseg.pairs`, the public sets and folder layouts of
:mod:`napari_ihcseg.datasets`) returns a list of :class:`Sample`: an RGB
``uint8`` image with instance labels (``int32``, 0 background), or, where the
annotation has no instance boundaries, only a boolean nucleus mask, or only
points. Samples carry the name of their image and the group it belongs to
(used to split by image, never by tile), their source data set and their
stain. :func:`split_by_image` makes the train / validation split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_ihcseg.pixel_size import check_pixel_size_um

__all__ = ["Sample", "read_sample_image", "split_by_image"]


@dataclass(frozen=True, eq=False)
class Sample:
    """One annotated image.

    Parameters
    ----------
    image : (H, W, 3) uint8
    labels : (H, W) int32 or None
        Instance labels; None when only a binary mask is known.
    mask : (H, W) bool or None
        Nucleus mask; derived from ``labels`` when those are given.
    name : str
        Unique image name (the unit of the train / validation split).
    source : str
        Data set it comes from (``"monuseg"``, ``"pairs"``, ...).
    stain : str
        ``"H&E"``, ``"Ki-67"``, ``"ER"``, ... (augmentation treats H&E apart).
    classes : dict or None
        Optional per-nucleus class (label id → 1 positive, 0 negative).
    group : str
        Samples of one group always fall on the same side of a train /
        validation split: tiles of one source image, or quarters of one
        field. Defaults to ``name``.
    points : (N, 2) float64 or None
        Nuclei annotated by a point, (row, col) in pixels (marker CSVs,
        QuPath points, count mode). A sample may have points and no mask.
    point_classes : (N,) int8 or None
        1 for a positive nucleus, 0 for a negative one, one per point.
    region : (H, W) bool or None
        Where the points are complete (every nucleus there has one); ``None``
        for the whole image.
    pixel_size_um : float or None
        The image's pixel size as its file (or the training pairs' manifest)
        records it; ``None`` when unknown. Segmenting the image with
        ``scale="auto"`` starts from it, and so does tuning on it
        (:func:`~napari_ihcseg.training.validate.tune_checkpoint`).
    """

    image: np.ndarray
    labels: np.ndarray | None
    mask: np.ndarray | None = None
    name: str = ""
    source: str = ""
    stain: str = ""
    classes: dict | None = field(default=None, repr=False)
    group: str = ""
    points: np.ndarray | None = field(default=None, repr=False)
    point_classes: np.ndarray | None = field(default=None, repr=False)
    region: np.ndarray | None = field(default=None, repr=False)
    pixel_size_um: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", self.name)
        image = np.asarray(self.image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{self.name}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if self.labels is None and self.mask is None and self.points is None:
            raise ValueError(f"{self.name}: a sample needs labels or a mask (or points)")
        if self.pixel_size_um is not None:
            object.__setattr__(self, "pixel_size_um", check_pixel_size_um(self.pixel_size_um,
                                                                          f"{self.name}: pixel_size_um"))
        self._check_points(image.shape[:2])
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != image.shape[:2]:
                raise ValueError(f"{self.name}: labels shape {labels.shape} differs from image {image.shape[:2]}")
            _check_label_ids(labels, self.name)
            if labels.size and labels.max() > np.iinfo(np.int32).max:  # ids up to 2**32 - 1: renumbered, not wrapped
                from skimage.segmentation import relabel_sequential

                labels = relabel_sequential(labels)[0]
            object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
            object.__setattr__(self, "mask", labels > 0)
        elif self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.shape != image.shape[:2]:
                raise ValueError(f"{self.name}: mask shape {mask.shape} differs from image {image.shape[:2]}")
            object.__setattr__(self, "mask", mask.astype(bool, copy=False))

    @property
    def points_only(self) -> bool:
        """Annotated by points alone (no labels, no mask)."""
        return self.labels is None and self.mask is None

    def _check_points(self, shape) -> None:
        if self.points is None:
            if self.point_classes is not None or self.region is not None:
                raise ValueError(f"{self.name}: point_classes and region need points")
            return
        points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        object.__setattr__(self, "points", points)
        if self.point_classes is not None:
            classes = np.asarray(self.point_classes, dtype=np.int8).reshape(-1)
            if classes.size != len(points) or not np.isin(classes, (0, 1)).all():
                raise ValueError(f"{self.name}: point_classes must be one 0 or 1 per point")
            object.__setattr__(self, "point_classes", classes)
        if self.region is not None:
            region = np.asarray(self.region, dtype=bool)
            if region.shape != tuple(shape):
                raise ValueError(f"{self.name}: region shape {region.shape} differs from image {tuple(shape)}")
            object.__setattr__(self, "region", region)


def _check_label_ids(labels: np.ndarray, where) -> None:
    """Refuse negative label ids: 0 is background and nuclei are 1..N, so they would be lost silently."""
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        negative = int(np.count_nonzero(labels < 0))
        raise ValueError(f"{where}: {negative} pixels have negative label ids (smallest {int(labels.min())}); "
                         "labels must be 0 for background and 1..N for nuclei")


def read_sample_image(path: Path) -> np.ndarray:
    """The RGB ``uint8`` image of a sample file (PNG, JPEG, TIFF).

    Unlike :func:`napari_ihcseg.io.read_image`, which reads images to be
    scored, a grey image is repeated into three channels, an alpha channel
    is dropped (data sets such as CPM-15 store an opaque one), and a blank
    tile is no cause for a warning. Other bit depths are refused.
    """
    from skimage.io import imread

    try:
        image = np.asarray(imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes one message
        raise ValueError(f"{path}: cannot read the image ({exc})") from None
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim == 3 and image.shape[-1] == 4:  # RGBA, or CMYK passing for it
        image = _cmyk_as_rgb(path, image)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: expected an RGB(A) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: expected 8-bit RGB, got dtype {image.dtype}")
    return np.ascontiguousarray(image[..., :3])


def _cmyk_as_rgb(path, image: np.ndarray) -> np.ndarray:
    """The RGB colours of a CMYK file, read as four channels that would pass for RGBA; ``image`` otherwise."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB")) if im.mode == "CMYK" else image
    except Exception:  # noqa: BLE001 - not a file PIL reads: not one it would convert either
        return image


def split_by_image(samples, val_fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split samples into training and validation sets by image, never by tile.

    The unit is a sample's ``group`` (its image name unless tiles of one
    source image or quarters of one field share a group). The split depends
    only on the groups, ``val_fraction`` and ``seed``, not on the order of
    ``samples``: each group is ranked by a hash of ``(seed, group)`` and the
    lowest ``round(val_fraction * n)`` go to validation (at least one when
    ``val_fraction > 0`` and there are two or more groups).

    Parameters
    ----------
    samples : sequence of Sample
    val_fraction : float
        In [0, 1).
    seed : int

    Returns
    -------
    train, val : lists of Sample
        In the input order.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((8, 8, 3), np.uint8); lab = np.zeros((8, 8), np.int32)
    >>> samples = [Sample(img, lab, name=f"im{i}") for i in range(10)]
    >>> train, val = split_by_image(samples, 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = sorted({s.group for s in samples})
    n_val = int(round(val_fraction * len(groups)))
    if val_fraction > 0 and n_val == 0 and len(groups) >= 2:
        n_val = 1
    ranked = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    val_groups = set(ranked[:n_val])
    train = [s for s in samples if s.group not in val_groups]
    val = [s for s in samples if s.group in val_groups]
    return train, val
