"""Readers for the real Ki-67 sets with point or polygon annotations.

Three sets of Ki-67 IHC fields (see ``../shared/data/README.md``), each read
into :class:`~napari_ihcseg.data.sample.Sample` objects and resampled to the
models' training scale (40x-like: nuclei about 24 px across, as in MoNuSeg):

``load_immunoratio`` (spec ``immunoratio:PATH``)
    Breast-cancer fields at about 20x (``field.jpg``), pathologist points
    (``markers.csv``: ``type,x,y``, 1 positive, 2 negative; point classes 1
    and 0) and the annotated tumour ``region.png``: outside it nothing is annotated, so loss and
    metrics count only inside it. Upsampled 2x.
``load_ki67_points`` (spec ``ki67-points:PATH``)
    The same kind of field at full (40x-like) resolution (``base.png``,
    ``markers.csv``, region ``mask-gt.png``). Scale 1.
``load_glioma_polygons`` (spec ``glioma:PATH``)
    Glioma camera frames (``image.jpg``) with one polygon per nucleus,
    rasterised (``labels.png``, uint16) and classed (``classes.csv``:
    ``label,class``, positive or negative). Nuclei are very large: downscaled
    0.37x.

Each set states its approximate scale factor to the models' scale and the
median nucleus diameter at its own scale (:data:`KI67_SETS`); the readers
resample by that factor unless told another (``scale=1`` reads the set as it
is, which is what an evaluation at the set's own scale wants).

The held-out split of :mod:`napari_ihcseg.datasets.ki67_split` is applied here:
by default (``cases="train"``, which is what the ``kind:PATH`` specs give) a
reader returns only the cases that may be trained on; ``cases="held-out"``
gives the evaluation cases and ``"all"`` both.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_ihcseg.data.sample import Sample, read_sample_image
from napari_ihcseg.io.labels import read_labels
from napari_ihcseg.io.points import read_points_csv

from .ki67_split import is_held_out
from .public import require_dir

#: Point classes of :attr:`Sample.point_classes`: 1 positive, 0 negative.
POINT_POSITIVE, POINT_NEGATIVE = 1, 0
CASE_SELECTIONS = ("train", "held-out", "all")


@dataclass(frozen=True)
class Ki67Set:
    """What a reader knows about one set.

    Parameters
    ----------
    split : str
        Its name in :data:`napari_ihcseg.datasets.ki67_split.HELD_OUT`.
    scale : float
        Approximate factor from the set's pixels to the models' 40x-like
        training scale.
    nucleus_diameter : float
        Typical nucleus diameter in the set's own pixels (the median of the
        source's estimate or of the polygons' equivalent diameters).
    licence, source : str
        For model cards.
    """

    split: str
    scale: float
    nucleus_diameter: float
    licence: str
    source: str


KI67_SETS = {
    "immunoratio": Ki67Set("immunoratio", 2.0, 13.0, "no licence stated upstream; research use only",
                           "github.com/AdamDlubak/Ki67 (commit d5370c0), ImmunoRatio report fields"),
    "ki67-points": Ki67Set("ki67-points", 1.0, 26.0, "no licence stated upstream; research use only",
                           "github.com/AdamDlubak/Ki67 (commit d5370c0)"),
    "glioma": Ki67Set("glioma", 0.37, 68.0, "no licence stated upstream; research use only",
                      "github.com/AntoineRouland/ki67 (commit 2aac6c4), Labelbox polygons"),
}


def _check_cases(cases: str) -> None:
    if cases not in CASE_SELECTIONS:
        raise ValueError(f"cases must be one of {', '.join(CASE_SELECTIONS)}, got {cases!r}")


def _selected(split: str, case: str, cases: str) -> bool:
    held = is_held_out(split, case)
    return cases == "all" or (cases == "held-out") == held


def resample_image(image: np.ndarray, scale: float) -> np.ndarray:
    """An RGB uint8 image resized by ``scale``: bilinear up, area-averaged down.

    >>> resample_image(np.zeros((10, 6, 3), np.uint8), 2.0).shape
    (20, 12, 3)
    """
    from PIL import Image

    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(image).resize(size, method))


def resample_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An integer (or boolean) map resized to ``shape`` by nearest neighbour (pixel centres)."""
    h, w = labels.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.intp), w - 1)
    return labels[rows[:, None], cols[None, :]]


def scale_points(points: np.ndarray, scale: float) -> np.ndarray:
    """Point coordinates (pixel centres) in an image resized by ``scale``.

    >>> scale_points(np.array([[0.0, 1.0]]), 2.0).tolist()
    [[0.5, 2.5]]
    """
    return (np.asarray(points, np.float64) + 0.5) * scale - 0.5


def _read_markers(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ValueError(f"{path}: missing (the point annotations, type,x,y)")
    points, positive = read_points_csv(path)
    # A point on the last pixel may sit on its far edge (x = width - 0.5).
    inside = np.all((points >= -0.5) & (points < np.asarray(shape)), axis=1)
    if not inside.any():
        # Without points, every annotated pixel would be taught as background, nuclei included.
        raise ValueError(f"{path}: no point inside the {shape[1]}x{shape[0]} image "
                         f"({len(points)} in the file); a case needs its point annotations")
    classes = np.where(positive, POINT_POSITIVE, POINT_NEGATIVE).astype(np.int8)
    return points[inside], classes[inside]


def _read_region(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{path}: missing (the annotated region)")
    region = read_labels(path) > 0
    if region.shape != shape:
        raise ValueError(f"{path}: shape {region.shape} differs from its image {shape}")
    if not region.any():
        raise ValueError(f"{path}: the annotated region is empty (no pixel above 0)")
    return region


def _point_sample(kind: str, case: Path, image_name: str, region_name: str, scale: float | None) -> Sample:
    info = KI67_SETS[kind]
    scale = info.scale if scale is None else float(scale)
    image_path = case / image_name
    if not image_path.is_file():
        raise ValueError(f"{image_path}: missing (the field image)")
    image = read_sample_image(image_path)
    points, classes = _read_markers(case / "markers.csv", image.shape[:2])
    region = _read_region(case / region_name, image.shape[:2])
    image = resample_image(image, scale)
    region = resample_labels(region, image.shape[:2])
    return Sample(image, None, name=f"{kind}/{case.name}", source=kind, stain="Ki-67",
                  points=scale_points(points, scale), point_classes=classes, region=region)


def _case_folders(root: Path, marker: str) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / marker).is_file())


def load_immunoratio(root: str | Path, *, cases: str = "train", scale: float | None = None) -> list[Sample]:
    """ki67-immunoratio fields with their points and tumour region.

    Parameters
    ----------
    root : path-like
        Folder of ``<case>/field.jpg``, ``markers.csv`` and ``region.png``.
    cases : {"train", "held-out", "all"}
        Which cases of the held-out split to read.
    scale : float, optional
        Resampling factor; default the set's 2.0 (about 20x to 40x-like).

    Returns
    -------
    list of Sample
        Point samples (``labels`` and ``mask`` None) with ``points``,
        ``point_classes`` and ``region``, sorted by case.
    """
    _check_cases(cases)
    root = require_dir(Path(root), "ki67-immunoratio folder")
    folders = [c for c in _case_folders(root, "field.jpg") if _selected("immunoratio", c.name, cases)]
    if not folders:
        raise ValueError(f"{root}: no {cases} case with a field.jpg")
    return [_point_sample("immunoratio", c, "field.jpg", "region.png", scale) for c in folders]


def load_ki67_points(root: str | Path, *, cases: str = "train", scale: float | None = None) -> list[Sample]:
    """ki67-points fields (``base.png``, ``markers.csv``, region ``mask-gt.png``).

    Both fields are held out for evaluation, so ``cases="train"`` (the
    default, and what the ``ki67-points:PATH`` spec reads) finds none and
    is refused; see :func:`load_immunoratio` for the parameters.
    """
    _check_cases(cases)
    root = require_dir(Path(root), "ki67-points folder")
    folders = [c for c in _case_folders(root, "base.png") if _selected("ki67-points", c.name, cases)]
    if not folders:
        raise ValueError(f"{root}: no {cases} case with a base.png (both ki67-points fields are held out "
                         f"for evaluation)")
    return [_point_sample("ki67-points", c, "base.png", "mask-gt.png", scale) for c in folders]


def _read_classes(path: Path) -> dict[int, int]:
    if not path.is_file():
        raise ValueError(f"{path}: missing (label,class per nucleus)")
    classes = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: as spreadsheets save CSV
        reader = csv.DictReader(fh)
        if not {"label", "class"} <= {(f or "").strip() for f in reader.fieldnames or ()}:
            raise ValueError(f"{path}: expected a header 'label,class', got {reader.fieldnames}")
        reader.fieldnames = [(f or "").strip() for f in reader.fieldnames]
        for row in reader:
            name = (row["class"] or "").strip().lower()
            if name not in ("positive", "negative"):
                raise ValueError(f"{path}, line {reader.line_num}: class must be positive or negative, "
                                 f"got {row['class']!r}")
            text = (row["label"] or "").strip()
            if not text.isdigit() or int(text) == 0:
                raise ValueError(f"{path}, line {reader.line_num}: label must be a nucleus id (a whole number "
                                 f"of 1 or more), got {row['label']!r}")
            if int(text) in classes:
                raise ValueError(f"{path}, line {reader.line_num}: nucleus {int(text)} is listed twice")
            classes[int(text)] = 1 if name == "positive" else 0
    return classes


def load_glioma_polygons(root: str | Path, *, cases: str = "train", scale: float | None = None) -> list[Sample]:
    """ki67-glioma-polygons frames: instance labels from the polygons, with classes.

    Parameters
    ----------
    root : path-like
        Folder of ``<id>/image.jpg``, ``labels.png`` (uint16 instances) and
        ``classes.csv``.
    cases, scale
        As in :func:`load_immunoratio`; the default scale is 0.37.

    Returns
    -------
    list of Sample
        Instance samples with ``classes`` (label → 1 positive, 0 negative),
        grouped by specimen (the part of the id before ``_-``).
    """
    _check_cases(cases)
    root = require_dir(Path(root), "ki67-glioma-polygons folder")
    scale = KI67_SETS["glioma"].scale if scale is None else float(scale)
    folders = [c for c in _case_folders(root, "image.jpg") if _selected("glioma", c.name, cases)]
    if not folders:
        raise ValueError(f"{root}: no {cases} frame with an image.jpg")
    samples = []
    for case in folders:
        image = read_sample_image(case / "image.jpg")
        labels_path = case / "labels.png"
        if not labels_path.is_file():
            raise ValueError(f"{labels_path}: missing (the instance label map)")
        labels = read_labels(labels_path)
        if labels.shape != image.shape[:2]:
            raise ValueError(f"{labels_path}: shape {labels.shape} differs from its image {image.shape[:2]}")
        if not labels.any():
            raise ValueError(f"{labels_path}: no nucleus outlined (every pixel is 0)")
        classes = _read_classes(case / "classes.csv")
        image = resample_image(image, scale)
        labels = resample_labels(labels, image.shape[:2])
        present = set(np.unique(labels).tolist()) - {0}
        samples.append(Sample(image, labels, name=f"glioma/{case.name}", source="glioma", stain="Ki-67",
                              classes={k: v for k, v in classes.items() if k in present},
                              group=f"glioma/{case.name.split('_-')[0]}"))
    return samples


#: Spec kinds of :func:`napari_ihcseg.datasets.registry.load_dataset` read here.
KI67_LOADERS = {"immunoratio": load_immunoratio, "glioma": load_glioma_polygons, "ki67-points": load_ki67_points}
