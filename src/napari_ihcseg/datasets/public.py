"""Readers of the public nucleus data sets: MoNuSeg, CPM-15, the GBM contours and DeepLIIF.

Each reader returns a list of :class:`~napari_ihcseg.data.sample.Sample`
(see ``../shared/data/README.md`` for where the sets come from and their
licences, :data:`napari_ihcseg.datasets.registry.LICENCES`):

``load_monuseg``
    MoNuSeg 2018 training set: 13 images with Aperio XML polygons become
    instance samples; the other 17 have only binary masks (touching nuclei
    merge) and become mask-only samples, trained without contour loss.
``load_cpm15``
    MICCAI 2015 (CPM-15) tiles with instance label maps.
``load_gbm``
    Glioma H&E patches with one image-editor polygon per nucleus. Whether
    every nucleus was outlined is not documented.
``load_deepliif``
    DeepLIIF Ki-67 IHC tiles; nuclei are the red (positive) and blue
    (negative) regions of the segmentation tile.

The real Ki-67 sets with point or polygon annotations have their readers in
:mod:`napari_ihcseg.datasets.ki67_sets`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_ihcseg.data.sample import Sample, read_sample_image
from napari_ihcseg.io.annotations import read_annotation_labels
from napari_ihcseg.io.labels import read_labels

__all__ = ["deepliif_labels", "load_cpm15", "load_deepliif", "load_gbm", "load_monuseg", "require_dir"]

#: Components of the DeepLIIF segmentation colours smaller than this are
#: anti-aliasing debris, not nuclei.
DEEPLIIF_MIN_SIZE = 16
#: Width of one DeepLIIF tile, and the column index of the segmentation tile.
DEEPLIIF_TILE = 512
DEEPLIIF_SEG_INDEX = 5


def require_dir(path, what: str) -> Path:
    """``path`` (``~`` expanded) if it is a folder; else a one-line error naming it and ``what`` it should hold."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ValueError(f"{path}: not a folder ({what})")
    return path


def load_monuseg(root: str | Path, *, include_mask_only: bool = True) -> list[Sample]:
    """MoNuSeg 2018 training images: instances from Aperio XML, else binary masks.

    Parameters
    ----------
    root : path-like
        Folder with ``Tissue_Images/``, ``Binary_masks/`` and ``Annotations/``.
    include_mask_only : bool
        Also return the images that have only a binary mask (``labels`` None).
    """
    root = require_dir(Path(root), "MoNuSeg root")
    images = sorted((root / "Tissue_Images").glob("*.png"))
    if not images:
        raise ValueError(f"{root / 'Tissue_Images'}: no PNG images")
    samples = []
    for path in images:
        image = read_sample_image(path)
        xml = root / "Annotations" / f"{path.stem}.xml"
        if xml.is_file():
            labels = read_annotation_labels(xml, image.shape[:2])
            samples.append(Sample(image, labels, name=f"monuseg/{path.stem}", source="monuseg", stain="H&E"))
        elif include_mask_only:
            mask_path = root / "Binary_masks" / path.name
            if not mask_path.is_file():
                raise ValueError(f"{path}: neither {xml.name} nor a binary mask {mask_path} exists")
            mask = read_labels(mask_path) > 0
            samples.append(Sample(image, None, mask, name=f"monuseg/{path.stem}", source="monuseg", stain="H&E"))
    return samples


def load_cpm15(root: str | Path) -> list[Sample]:
    """CPM-15 tiles (``imageXX.png`` with ``imageXX_labels.png``); alpha is dropped."""
    root = require_dir(Path(root), "CPM-15 folder")
    samples = []
    for path in sorted(root.glob("image??.png")):
        labels_path = path.with_name(f"{path.stem}_labels.png")
        if not labels_path.is_file():
            raise ValueError(f"{path}: its label map {labels_path.name} is missing")
        image = read_sample_image(path)
        labels = read_labels(labels_path)
        samples.append(Sample(image, labels, name=f"cpm15/{path.stem}", source="cpm15", stain="H&E"))
    if not samples:
        raise ValueError(f"{root}: no imageXX.png tiles")
    return samples


def tcga_patient(name: str) -> str:
    """The patient of a TCGA image name (``TCGA-<site>-<participant>``), or the name before ``.tif``.

    >>> tcga_patient("TCGA-FG-A4MU-R02.tif_normal.png_normal_small_3"), tcga_patient("37")
    ('TCGA-FG-A4MU', '37')
    """
    import re

    found = re.match(r"(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})", name)
    return found.group(1) if found else name.split(".tif")[0]


def load_gbm(root: str | Path) -> list[Sample]:
    """Glioma patches with image-editor XML polygons (``GBM40`` and ``TCGA_result``).

    Not every nucleus may be outlined (the source does not say); use these
    labels with that in mind.
    """
    root = require_dir(Path(root), "GBM/TCGA contour folder")
    samples = []
    for part in ("GBM40", "TCGA_result"):
        for path in sorted((root / part / "raw_image").glob("*.png")):
            xml = root / part / "contour_annotation_xml" / f"{path.stem}_data.xml"
            if not xml.is_file():  # as load_cpm15 does: a set with a file missing is not read as a smaller set
                raise ValueError(f"{path}: no contour annotation beside it (expected {xml})")
            image = read_sample_image(path)
            labels = read_annotation_labels(xml, image.shape[:2])
            # TCGA_result patches are quarters of fields, two fields (R01, R02) a patient: keep a patient together.
            group = f"gbm/{part}/{tcga_patient(path.stem)}"
            samples.append(Sample(image, labels, name=f"gbm/{part}/{path.stem}", source="gbm", stain="H&E",
                                  group=group))
    if not samples:
        raise ValueError(f"{root}: no image with a contour XML under GBM40/ or TCGA_result/")
    return samples


def deepliif_labels(segmentation: np.ndarray, *, min_size: int = DEEPLIIF_MIN_SIZE) -> tuple[np.ndarray, dict]:
    """Nuclei of a DeepLIIF segmentation tile: red positive, blue negative.

    Channels are thresholded at > 128 (edges are anti-aliased). Red and blue
    regions are labelled separately so touching nuclei of different classes
    stay apart; components under ``min_size`` pixels are dropped.

    Returns
    -------
    labels : (H, W) int32
    classes : dict
        Label id → 1 (Ki-67 positive) or 0 (negative).
    """
    high = np.asarray(segmentation)[..., :3] > 128
    red = high[..., 0] & ~high[..., 1] & ~high[..., 2]
    blue = high[..., 2] & ~high[..., 0] & ~high[..., 1]
    labels = np.zeros(red.shape, np.int32)
    classes: dict[int, int] = {}
    next_id = 1
    for region, cls in ((red, 1), (blue, 0)):
        comp, n = ndi.label(region)
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        for i in range(1, n + 1):
            if sizes[i] < min_size:
                continue
            labels[comp == i] = next_id
            classes[next_id] = cls
            next_id += 1
    return labels, classes


def load_deepliif(root: str | Path) -> list[Sample]:
    """DeepLIIF Ki-67 samples: the IHC tile and nuclei from the segmentation tile."""
    root = require_dir(Path(root), "DeepLIIF folder")
    samples = []
    for path in sorted(root.glob("*.png")):
        strip = read_sample_image(path)
        if strip.shape[1] < DEEPLIIF_TILE * (DEEPLIIF_SEG_INDEX + 1) or strip.shape[0] != DEEPLIIF_TILE:
            raise ValueError(f"{path}: expected a {DEEPLIIF_TILE}x{DEEPLIIF_TILE * 6} strip of six tiles, "
                             f"got {strip.shape[1]}x{strip.shape[0]}")
        image = np.ascontiguousarray(strip[:, :DEEPLIIF_TILE])
        seg = strip[:, DEEPLIIF_TILE * DEEPLIIF_SEG_INDEX: DEEPLIIF_TILE * (DEEPLIIF_SEG_INDEX + 1)]
        labels, classes = deepliif_labels(seg)
        samples.append(Sample(image, labels, name=f"deepliif/{path.stem}", source="deepliif", stain="Ki-67",
                              classes=classes))
    if not samples:
        raise ValueError(f"{root}: no DeepLIIF PNG strips")
    return samples
