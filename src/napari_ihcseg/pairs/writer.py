"""Saving corrected nucleus labels as training pairs, safely.

Pairs are cut from an image and its labels (the whole image, a region, or
tiles), and written with their ``dataset.json`` entry as
:mod:`napari_ihcseg.pairs.layout` describes them: the image as PNG, the mask
through :func:`napari_ihcseg.io.write_labels`, the counted points through
:func:`napari_ihcseg.io.points.write_points_csv`.

Every file is written atomically (temporary file, then rename), and an
existing pair is never replaced unless the caller passes ``overwrite=True``.

Examples
--------
>>> import tempfile, numpy as np
>>> folder = tempfile.mkdtemp()
>>> image = np.full((64, 64, 3), 200, np.uint8)
>>> labels = np.zeros((64, 64), np.int32); labels[10:20, 10:20] = 1
>>> [p.id for p in save_pairs(folder, image, labels, source="/slides/case1.svs")]
['case1']
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np

from napari_ihcseg._atomic import atomic_path, write_json_atomic
from napari_ihcseg.inference.tiling import tile_starts
from napari_ihcseg.io.labels import write_labels
from napari_ihcseg.io.names import image_stem, safe_name
from napari_ihcseg.io.points import write_points_csv

from .layout import (
    IMAGE_SUFFIX,
    IMAGES_DIR,
    MANIFEST,
    MASK_SUFFIX,
    MASKS_DIR,
    MODES,
    POINTS_DIR,
    POINTS_SUFFIX,
    SHARED_KEYS,
    TILE_SIZES,
    SavedPair,
    check_folder,
    new_manifest,
    now,
    pair_id,
    read_manifest,
)

__all__ = ["TrainingPairWriter", "plan_regions", "save_pairs"]


def plan_regions(shape, *, mode: str = "whole", region=None, tile: int = 256,
                 stride: int | None = None) -> list[tuple[int, int, int, int]]:
    """The ``(y0, x0, y1, x1)`` boxes a save cuts from an image of ``shape``.

    ``"whole"`` is the image; ``"region"`` is ``region``; ``"tiles"`` is a grid
    of ``tile``-sized windows every ``stride`` pixels (default ``tile``) over
    ``region`` (or the image), the last window flush with the far edge.

    Examples
    --------
    >>> plan_regions((600, 300), mode="tiles", tile=256)
    [(0, 0, 256, 256), (0, 44, 256, 300), (256, 0, 512, 256), (256, 44, 512, 300), (344, 0, 600, 256), (344, 44, 600, 300)]
    """
    h, w = int(shape[0]), int(shape[1])
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if region is None:
        if mode == "region":
            raise ValueError("mode='region' needs region=(y0, x0, y1, x1)")
        box = (0, 0, h, w)
    else:
        y0, x0, y1, x1 = (int(round(float(v))) for v in region)
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"region {tuple(region)} does not overlap the {h}x{w} image")
        box = (y0, x0, y1, x1)
    if mode != "tiles":
        return [box]
    if tile not in TILE_SIZES:
        raise ValueError(f"tile must be one of {TILE_SIZES}, got {tile}")
    stride = tile if stride is None else int(stride)
    if not 0 < stride <= tile:
        raise ValueError(f"stride must be between 1 and the tile size {tile}, got {stride}")
    y0, x0, y1, x1 = box
    ys, xs = tile_starts(y1 - y0, tile, tile - stride), tile_starts(x1 - x0, tile, tile - stride)
    return [(y0 + oy, x0 + ox, y0 + min(oy + tile, y1 - y0), x0 + min(ox + tile, x1 - x0))
            for oy in ys for ox in xs]


def _relabel(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(ids[-1]) + 1 if ids.size else 1, dtype=np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    return lut[labels]


class TrainingPairWriter:
    """Writes image/mask pairs and keeps ``dataset.json`` up to date.

    Parameters
    ----------
    folder : path-like
        The dataset folder, absolute (``~`` is expanded). Created on the first save.
    """

    def __init__(self, folder) -> None:
        self.folder = check_folder(folder)

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def manifest(self) -> dict:
        """The content of ``dataset.json`` (an empty manifest if there is none yet).

        An existing one is checked as the reader checks it
        (:func:`~napari_ihcseg.pairs.layout.check_manifest`).
        """
        if not self.manifest_path.exists():
            return new_manifest()
        return read_manifest(self.folder)

    def pair_ids(self) -> list[str]:
        """Ids of the pairs already in the folder."""
        return [p["id"] for p in self.manifest().get("pairs", [])]

    def _paths(self, pid: str) -> tuple[Path, Path]:
        return self.folder / IMAGES_DIR / f"{pid}{IMAGE_SUFFIX}", self.folder / MASKS_DIR / f"{pid}{MASK_SUFFIX}"

    def _points_path(self, pid: str) -> Path:
        return self.folder / POINTS_DIR / f"{pid}{POINTS_SUFFIX}"

    def conflicts(self, ids) -> list[str]:
        """Which of ``ids`` already exist (in ``dataset.json`` or as files)."""
        known = set(self.pair_ids())
        return [i for i in ids if i in known or any(p.exists() for p in (*self._paths(i), self._points_path(i)))]

    def plan(self, image_shape, *, mode="whole", region=None, tile=256, stride=None, source=None,
             name=None, origin=(0, 0)) -> list[tuple[str, tuple[int, int, int, int]]]:
        """The ``(id, box)`` of every pair a :meth:`save` with these options would consider.

        Boxes are in the coordinates of the arrays; ids use source coordinates
        (the box shifted by ``origin``).
        """
        stem = safe_name(name or (image_stem(str(source)) if source else "image"))
        oy, ox = (int(v) for v in origin)
        id_mode = "region" if mode == "whole" and (oy or ox) else mode
        return [(pair_id(stem, (b[0] + oy, b[1] + ox, b[2] + oy, b[3] + ox), mode=id_mode, tile=tile), b)
                for b in plan_regions(image_shape, mode=mode, region=region, tile=tile, stride=stride)]

    def save(self, image: np.ndarray, labels: np.ndarray, *, mode: str = "whole", region=None,
             tile: int = 256, stride: int | None = None, drop_empty: bool = True, source=None,
             stain: str | None = None, pixel_size_um: float | None = None, model: str | None = None,
             corrected_labels: Mapping[int, str] | Collection[int] = (), edited_mask: np.ndarray | None = None,
             name: str | None = None, origin=(0, 0), points=None, point_positive=None,
             overwrite: bool = False) -> list[SavedPair]:
        """Cut pairs from ``image`` and ``labels`` and write them.

        Parameters
        ----------
        image : (H, W, 3) ndarray of uint8
        labels : (H, W) ndarray of int
            Instance labels; each pair's mask is renumbered 1..N.
        mode : {"whole", "region", "tiles"}
        region : (y0, x0, y1, x1), optional
            The part to save (``"region"``), or to tile (``"tiles"``).
        tile : {256, 512}
        stride : int, optional
            Step between tiles (default: the tile size, no overlap).
        drop_empty : bool
            Skip pairs without any nucleus.
        source, stain, pixel_size_um, model : optional
            Provenance written to ``dataset.json``; ``source`` also names the pairs.
        corrected_labels : mapping of id to ISO time, or collection of ids
            Nuclei a human created or changed (e.g. ``EditTracker.edit_times()``).
        edited_mask : (H, W) ndarray of bool, optional
            Pixels a human changed (catches deleted nuclei too).
        name : str, optional
            Stem of the pair ids instead of the source's file name.
        origin : (int, int)
            Where ``image[0, 0]`` lies in the source image (a field of view cut
            from a slide); recorded regions and ids are in source pixels.
        points : (N, 2) array_like of float, optional
            Nuclei a person counted, (row, col) in pixels of the arrays; each
            pair keeps those inside it in ``points/<id>.csv``.
        point_positive : (N,) array_like of bool, optional
            Whether each counted nucleus is positive (required with ``points``).
        overwrite : bool
            Replace existing pairs of the same id. Ask the user first.

        Returns
        -------
        list of SavedPair

        Raises
        ------
        FileExistsError
            If a pair exists and ``overwrite`` is false; nothing is written then.
        ValueError
            If the folder's ``dataset.json`` is not one of this format.
        """
        image = np.asarray(image)
        labels = np.asarray(labels)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be RGB uint8 of shape (H, W, 3), got {image.dtype} {image.shape}")
        if labels.shape != image.shape[:2] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape {image.shape[:2]}, got {labels.dtype} {labels.shape}")
        if edited_mask is not None and np.shape(edited_mask) != labels.shape:
            raise ValueError(f"edited_mask has shape {np.shape(edited_mask)}, the labels {labels.shape}")
        if points is not None:
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            if point_positive is None or np.size(point_positive) != len(points):
                raise ValueError("point_positive must give one positive flag per point")
            point_positive = np.asarray(point_positive, dtype=bool).reshape(-1)
        times = (dict(corrected_labels) if isinstance(corrected_labels, Mapping)
                 else {int(i): None for i in corrected_labels})
        planned = self.plan(image.shape, mode=mode, region=region, tile=tile, stride=stride,
                            source=source, name=name, origin=origin)
        oy, ox = (int(v) for v in origin)
        if drop_empty:
            planned = [(pid, b) for pid, b in planned if labels[b[0]:b[2], b[1]:b[3]].any()]
        if not overwrite:
            taken = self.conflicts([pid for pid, _ in planned])
            if taken:
                raise FileExistsError(f"{self.folder}: pair {taken[0]!r} already exists"
                                      + (f" (and {len(taken) - 1} more)" if len(taken) > 1 else "")
                                      + "; pass overwrite=True to replace it")
        from PIL import Image

        fallback = max((t for t in times.values() if t), default=None) or now()
        saved = []
        for pid, (y0, x0, y1, x1) in planned:
            crop_lab = labels[y0:y1, x0:x1]
            present = np.unique(crop_lab)
            fixed = [i for i in present.tolist() if i in times and i > 0]
            touched = bool(fixed) or (edited_mask is not None and bool(edited_mask[y0:y1, x0:x1].any()))
            when = max((times[i] for i in fixed if times[i]), default=None) or (fallback if touched else None)
            img_path, mask_path = self._paths(pid)
            with atomic_path(img_path, overwrite=overwrite) as tmp:
                Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1])).save(tmp, format="PNG")
            try:
                write_labels(mask_path, _relabel(crop_lab), overwrite=overwrite)
            except BaseException:
                if not overwrite:  # do not leave an image without its mask
                    img_path.unlink(missing_ok=True)
                raise
            kept = None
            if points is not None:
                kept = self._write_points(pid, points, point_positive, (y0, x0, y1, x1), overwrite=overwrite)
            saved.append(SavedPair(
                pid, f"{IMAGES_DIR}/{img_path.name}", f"{MASKS_DIR}/{mask_path.name}",
                (y0 + oy, x0 + ox, y1 + oy, x1 + ox), mode,
                tile if mode == "tiles" else None, (stride or tile) if mode == "tiles" else None,
                int((present > 0).sum()), touched, len(fixed), when,
                str(source) if source is not None else None, stain,
                float(pixel_size_um) if pixel_size_um is not None else None, model, now(),
                f"{POINTS_DIR}/{self._points_path(pid).name}" if kept is not None else None, kept or 0,
                (y0 + oy, x0 + ox, y1 + oy, x1 + ox) if kept is not None else None))
        if saved:
            self._update_manifest(saved, drop_empty=drop_empty)
        return saved

    def _write_points(self, pid: str, points: np.ndarray, positive: np.ndarray, box, *, overwrite: bool) -> int:
        """Write the points inside ``box`` to ``points/<id>.csv`` (pair pixels); returns how many."""
        y0, x0, y1, x1 = box
        inside = (points[:, 0] >= y0) & (points[:, 0] < y1) & (points[:, 1] >= x0) & (points[:, 1] < x1)
        try:
            write_points_csv(self._points_path(pid), points[inside] - [y0, x0], positive[inside], overwrite=overwrite)
        except BaseException:
            if not overwrite:  # do not leave a pair without the points it was saved with
                for path in self._paths(pid):
                    path.unlink(missing_ok=True)
            raise
        return int(inside.sum())

    def _update_manifest(self, saved: list[SavedPair], *, drop_empty: bool) -> None:
        data = self.manifest()
        new_ids = {p.id for p in saved}
        pairs = [p for p in data.get("pairs", []) if p["id"] not in new_ids] + [p.to_dict() for p in saved]
        data["pairs"] = pairs
        # Settings shared by every pair are repeated at the top (None where the pairs differ);
        # each pair's own entry is authoritative.
        for key in SHARED_KEYS:
            values = {p.get(key) for p in pairs}
            data[key] = values.pop() if len(values) == 1 else None
        data["drop_empty"] = drop_empty if data.get("drop_empty") in (None, drop_empty) else None
        data["updated"] = now()
        write_json_atomic(self.manifest_path, data)


def save_pairs(folder, image: np.ndarray, labels: np.ndarray, **options) -> list[SavedPair]:
    """Write training pairs into ``folder``; see :meth:`TrainingPairWriter.save` for the options."""
    return TrainingPairWriter(folder).save(image, labels, **options)
