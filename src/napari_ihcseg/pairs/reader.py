"""Reading a training-pair folder back as :class:`~napari_ihcseg.data.sample.Sample` objects.

The folder is the one :mod:`napari_ihcseg.pairs.writer` writes (the layout is
in :mod:`napari_ihcseg.pairs.layout`); ``dataset.json`` is checked by the
same :func:`~napari_ihcseg.pairs.layout.check_manifest` the writer uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_ihcseg.data.sample import Sample, read_sample_image
from napari_ihcseg.io.labels import read_labels
from napari_ihcseg.io.points import read_points_csv

from .layout import IMAGE_SUFFIX, IMAGES_DIR, MANIFEST, MASK_SUFFIX, MASKS_DIR, inside, read_manifest

__all__ = ["load_pairs_folder"]


def load_pairs_folder(path: str | Path) -> list[Sample]:
    """Read a training-pair folder written by the napari widget.

    Parameters
    ----------
    path : path-like
        Folder with ``images/<id>.png``, ``masks/<id>.tif`` (``uint32``
        instances), ``dataset.json`` and, for counted pairs,
        ``points/<id>.csv``. The folder names and suffixes recorded in
        ``dataset.json`` are honoured; when it lists ``pairs``, exactly those
        are read (with their own stain and source), otherwise every image
        with a mask of the same id.

    Returns
    -------
    list of Sample
        Sorted by id; ``name`` is ``<folder name>/<id>``, ``source`` is
        ``"pairs"``, ``group`` is the source image the pair was cut from (so
        tiles of one image stay on one side of a split); counted pairs carry
        their ``points`` and ``point_classes``.

    Raises
    ------
    ValueError
        If ``dataset.json`` is refused, the layout is wrong, an image has no
        mask (or the reverse), or a mask does not fit its image.
    """
    root = Path(path).expanduser()
    meta = read_manifest(root)
    image_suffix = meta.get("image_suffix") or IMAGE_SUFFIX
    mask_suffix = meta.get("mask_suffix") or MASK_SUFFIX
    images_dir = inside(root, meta.get("images_dir") or IMAGES_DIR, "images_dir")
    masks_dir = inside(root, meta.get("masks_dir") or MASKS_DIR, "masks_dir")
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise ValueError(f"{d}: missing; a training-pair folder needs {IMAGES_DIR}/ and {MASKS_DIR}/")
    entries = meta.get("pairs")
    if entries:
        pairs = {str(p["id"]): p for p in entries}
    else:
        image_ids = {p.name[: -len(image_suffix)] for p in images_dir.glob(f"*{image_suffix}")}
        mask_ids = {p.name[: -len(mask_suffix)] for p in masks_dir.glob(f"*{mask_suffix}")}
        if image_ids != mask_ids:
            missing = sorted(image_ids ^ mask_ids)[:5]
            raise ValueError(f"{root}: images and masks do not pair up (unmatched ids: {', '.join(missing)})")
        pairs = {pid: {"id": pid} for pid in image_ids}
    if not pairs:
        raise ValueError(f"{root}: no training pairs in {images_dir.name}/ and {masks_dir.name}/")
    layout = {"image": (images_dir, image_suffix), "mask": (masks_dir, mask_suffix)}
    return [_sample(root, meta, pid, pairs[pid], layout) for pid in sorted(pairs)]


def _sample(root: Path, meta: dict, pid: str, entry: dict, layout: dict) -> Sample:
    """One pair: its entry's own paths where it lists them, else those of the folder's layout."""
    image_path, mask_path = (
        inside(root, entry.get(key) or (folder.relative_to(root) / f"{pid}{suffix}"), f"pair {pid!r} {key}")
        for key, (folder, suffix) in layout.items())
    for p in (image_path, mask_path):
        if not p.is_file():
            raise ValueError(f"{p}: listed in {root / MANIFEST} but missing")
    image = read_sample_image(image_path)
    labels = read_labels(mask_path)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"{mask_path}: shape {labels.shape} differs from its image {image.shape[:2]}")
    stain = str(entry.get("stain") or meta.get("stain") or "")
    group = str(entry.get("source") or meta.get("source") or pid)
    points = classes = None
    if entry.get("points"):  # counts kept beside the mask (count mode)
        points, positive = read_points_csv(inside(root, entry["points"], f"pair {pid!r} points"))
        classes = positive.astype(np.int8)
    return Sample(image, labels, name=f"{root.name}/{pid}", source="pairs", stain=stain,
                  group=f"{root.name}:{group}", points=points, point_classes=classes)
