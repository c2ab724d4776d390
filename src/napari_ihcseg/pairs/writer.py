"""Saving corrected nucleus labels as training pairs, safely.

Pairs are cut from an image and its labels (the whole image, a region, or
tiles), and written with their ``dataset.json`` entry as
:mod:`napari_ihcseg.pairs.layout` describes them: the image as PNG, the mask
through :func:`napari_ihcseg.io.write_labels`, the counted points through
:func:`napari_ihcseg.io.points.write_points_csv`.

Every file is written atomically (temporary file, then rename), and a pair
``dataset.json`` lists is never replaced unless the caller passes
``overwrite=True``. ``dataset.json`` lists only complete pairs
(:mod:`napari_ihcseg.pairs.manifest`): it is written before the first file
of a new folder, the pairs a save replaces leave it before their files are
touched, and the pairs of a save are listed once all their files are in
place. A save that is killed leaves files that no entry names; the reader
ignores them, and the same save done again replaces them. A folder that
holds training data ``dataset.json`` does not list (a lab's own ``images/``
and ``masks/``) is refused.

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

from napari_ihcseg._atomic import atomic_path, remove_stale_parts
from napari_ihcseg._folder_lock import folder_lock
from napari_ihcseg.inference.tiling import tile_starts
from napari_ihcseg.io.labels import write_labels
from napari_ihcseg.io.names import image_stem, safe_name
from napari_ihcseg.io.points import points_outside, write_points_csv

from .layout import (
    IMAGE_SUFFIX,
    IMAGES_DIR,
    MANIFEST,
    MASK_SUFFIX,
    MASKS_DIR,
    MODES,
    POINTS_DIR,
    POINTS_SUFFIX,
    TILE_SIZES,
    SavedPair,
    check_folder,
    new_manifest,
    now,
    pair_id,
    read_manifest,
    recorded_source,
    stem_free_of_other_files,
)
from .manifest import check_no_foreign_data, listed_ids, with_pairs, write_manifest

__all__ = ["TrainingPairWriter", "plan_regions", "save_pairs"]

#: How many of the pairs a save replaces leave ``dataset.json`` at once, just before their files are written.
_UNLIST_BATCH = 32


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
    """``labels`` (ids 0 or positive) renumbered 1..N in the order of their ids, 0 kept, as ``uint32``."""
    top = int(labels.max(initial=0))
    if top < max(2 * labels.size, 1 << 16):  # a lookup table of every id up to the largest is small
        present = np.zeros(top + 1, dtype=bool)
        present[labels] = True
        present[0] = False
        lut = np.zeros(top + 1, dtype=np.uint32)
        lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.uint32)
        return lut[labels]
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape).astype(np.uint32)
    return inverse if ids[0] == 0 else inverse + np.uint32(1)


def _check_labels(labels: np.ndarray, what: str) -> None:
    """Refuse negative label ids (they would be saved as the id of another nucleus)."""
    if labels.size and labels.min() < 0:
        bad = labels < 0
        raise ValueError(f"{what}: negative label ids in the nuclei labels ({int(bad.sum())} pixel(s), "
                         f"smallest {int(labels[bad].min())}); nuclei need ids 1, 2, ... and the background 0")


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
        """Ids of the pairs ``dataset.json`` lists (the complete pairs in the folder)."""
        return listed_ids(self.manifest())

    def _paths(self, pid: str) -> tuple[Path, Path]:
        return self.folder / IMAGES_DIR / f"{pid}{IMAGE_SUFFIX}", self.folder / MASKS_DIR / f"{pid}{MASK_SUFFIX}"

    def _points_path(self, pid: str) -> Path:
        return self.folder / POINTS_DIR / f"{pid}{POINTS_SUFFIX}"

    def conflicts(self, ids) -> list[str]:
        """Which of ``ids`` are pairs ``dataset.json`` lists.

        Files no entry names (left by a save that did not finish) are no
        pairs: a save replaces them without asking.
        """
        known = set(self.pair_ids())
        return [i for i in ids if i in known]

    def plan(self, image_shape, *, mode="whole", region=None, tile=256, stride=None, source=None,
             name=None, origin=(0, 0)) -> list[tuple[str, tuple[int, int, int, int]]]:
        """The ``(id, box)`` of every pair a :meth:`save` with these options would consider.

        Boxes are in the coordinates of the arrays; ids use source coordinates
        (the box shifted by ``origin``). Ids start with ``name``, else with
        the source's file name; when pairs of another file of that name are
        listed already (two slides ``case1.tif`` in two folders), with
        ``case1-2`` (``-3``...), so one slide's pairs never replace another's.
        """
        source = recorded_source(source)
        stem = safe_name(name or (image_stem(str(source)) if source else "image"))
        if not name and source and self.manifest_path.exists():
            stem = stem_free_of_other_files(self.manifest(), stem, str(source))
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
            Instance labels (0 background, nuclei positive); each pair's mask
            is renumbered 1..N.
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
            Replace the pairs of the same id that ``dataset.json`` lists. Ask
            the user first. Files no entry names (left by a save that did not
            finish) are replaced either way.

        Returns
        -------
        list of SavedPair

        Raises
        ------
        FileExistsError
            If a pair exists and ``overwrite`` is false; nothing is written then.
        ValueError
            If the labels hold negative ids, the folder's ``dataset.json`` is
            not one of this format, or the folder holds training data that
            ``dataset.json`` does not list (another layout); nothing is written then.

        Notes
        -----
        Saves into one folder take turns (:func:`~napari_ihcseg._folder_lock.folder_lock`):
        a second one waits until the first has listed its pairs, so neither
        drops the other's from ``dataset.json``.

        A save that fails or is killed lists none of its pairs in
        ``dataset.json``; the pairs it was to replace and had not reached are
        kept (after a kill, those it had reached or was about to reach are not
        listed until they are saved again). Saving the same pairs again
        completes it, replacing the files the failed save left.
        """
        image = np.asarray(image)
        labels = np.asarray(labels)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be RGB uint8 of shape (H, W, 3), got {image.dtype} {image.shape}")
        if labels.shape != image.shape[:2] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape {image.shape[:2]}, got {labels.dtype} {labels.shape}")
        if edited_mask is not None:
            edited_mask = np.asarray(edited_mask)
            if edited_mask.shape != labels.shape:
                raise ValueError(f"edited_mask has shape {edited_mask.shape}, the labels {labels.shape}")
        if points is not None:
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            if point_positive is None or np.size(point_positive) != len(points):
                raise ValueError("point_positive must give one positive flag per point")
            point_positive = np.asarray(point_positive, dtype=bool).reshape(-1)
        source = recorded_source(source)
        _check_labels(labels, str(source) if source is not None else (name or "the nuclei labels"))
        times = (dict(corrected_labels) if isinstance(corrected_labels, Mapping)
                 else {int(i): None for i in corrected_labels})
        planned = self.plan(image.shape, mode=mode, region=region, tile=tile, stride=stride,
                            source=source, name=name, origin=origin)
        if drop_empty:
            planned = [(pid, b) for pid, b in planned if labels[b[0]:b[2], b[1]:b[3]].any()]
        if not planned:
            return []
        exists = self.manifest_path.exists()
        # Refused before the lock file is made: a lab's folder is left as it was.
        check_no_foreign_data(self.folder, read_manifest(self.folder) if exists else None)
        with folder_lock(self.folder, what="dataset folder"):  # another save reads dataset.json after this one
            return self._save_planned(planned, image, labels, times, edited_mask, points, point_positive,
                                      overwrite=overwrite, drop_empty=drop_empty, mode=mode, tile=tile,
                                      stride=stride, source=source, stain=stain, pixel_size_um=pixel_size_um,
                                      model=model, origin=origin)

    def _save_planned(self, planned, image, labels, times, edited_mask, points, point_positive, *,
                      overwrite: bool, drop_empty: bool, **common) -> list[SavedPair]:
        """Write the ``planned`` pairs and list them, the folder locked (see :meth:`save`)."""
        exists = self.manifest_path.exists()
        meta = read_manifest(self.folder) if exists else new_manifest()
        check_no_foreign_data(self.folder, meta if exists else None)
        taken = set(listed_ids(meta)) & {pid for pid, _ in planned}
        if taken and not overwrite:
            first = next(pid for pid, _ in planned if pid in taken)
            raise FileExistsError(f"{self.folder}: pair {first!r} already exists"
                                  + (f" (and {len(taken) - 1} more)" if len(taken) > 1 else "")
                                  + "; pass overwrite=True to replace it")
        # dataset.json first: the folder is a training-pair folder from its first file on.
        if not exists:
            write_manifest(self.folder, meta)
        replaced = {str(p["id"]): p for p in meta.get("pairs") or [] if str(p["id"]) in taken}
        fallback = max((t for t in times.values() if t), default=None) or now()
        saved: list[SavedPair] = []
        created: list[Path] = []
        unlisted: set[str] = set()
        try:
            for k, (pid, box) in enumerate(planned):
                if pid in replaced and pid not in unlisted:
                    # A pair leaves dataset.json before its files are touched (a few at a time).
                    batch = [p for p, _ in planned[k:] if p in replaced and p not in unlisted][:_UNLIST_BATCH]
                    write_manifest(self.folder, with_pairs(meta, drop=batch))
                    unlisted.update(batch)
                saved.append(self._write_pair(pid, box, image, labels, times, fallback, edited_mask, points,
                                              point_positive, created, **common))
        except BaseException:
            # A save lists all its pairs or none: the files it added go, and the pairs it was to replace
            # but had not reached yet are listed again as they were.
            for path in created:
                path.unlink(missing_ok=True)
            untouched = [replaced[p] for p, _ in planned[len(saved) + 1:] if p in unlisted]
            if untouched:
                meta["pairs"] = (meta.get("pairs") or []) + untouched
                write_manifest(self.folder, with_pairs(meta))
            raise
        write_manifest(self.folder, with_pairs(meta, add=saved, drop_empty=drop_empty))
        remove_stale_parts(p for pid, _ in planned for p in (*self._paths(pid), self._points_path(pid)))
        return saved

    def _write_pair(self, pid: str, box, image: np.ndarray, labels: np.ndarray, times: dict, fallback: str,
                    edited_mask, points, point_positive, created: list[Path], *, mode: str, tile: int,
                    stride: int | None, source, stain, pixel_size_um, model, origin) -> SavedPair:
        """Write the files of one pair (each atomically) and return its entry; new files go to ``created``."""
        from PIL import Image

        y0, x0, y1, x1 = box
        oy, ox = (int(v) for v in origin)
        crop_lab = labels[y0:y1, x0:x1]
        present = np.unique(crop_lab)
        fixed = [i for i in present.tolist() if i in times and i > 0]
        touched = bool(fixed) or (edited_mask is not None and bool(edited_mask[y0:y1, x0:x1].any()))
        when = max((times[i] for i in fixed if times[i]), default=None) or (fallback if touched else None)
        img_path, mask_path = self._paths(pid)
        points_path = self._points_path(pid)
        created.extend(p for p in (img_path, mask_path, points_path if points is not None else None)
                       if p is not None and not p.exists())
        with atomic_path(img_path) as tmp:
            Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1])).save(tmp, format="PNG")
        write_labels(mask_path, _relabel(crop_lab))
        kept = None
        if points is not None:
            # On the pair's pixels as the reader counts them (points_outside: pixel r spans r - 0.5 .. r + 0.5).
            inside = ~points_outside(points - [y0, x0], (y1 - y0, x1 - x0))
            write_points_csv(points_path, points[inside] - [y0, x0], point_positive[inside], overwrite=True)
            kept = int(inside.sum())
        region = (y0 + oy, x0 + ox, y1 + oy, x1 + ox)
        return SavedPair(
            pid, f"{IMAGES_DIR}/{img_path.name}", f"{MASKS_DIR}/{mask_path.name}", region, mode,
            tile if mode == "tiles" else None, (stride or tile) if mode == "tiles" else None,
            int((present > 0).sum()), touched, len(fixed), when,
            str(source) if source is not None else None, stain,
            float(pixel_size_um) if pixel_size_um is not None else None, model, now(),
            f"{POINTS_DIR}/{points_path.name}" if kept is not None else None, kept or 0,
            region if kept is not None else None)


def save_pairs(folder, image: np.ndarray, labels: np.ndarray, **options) -> list[SavedPair]:
    """Write training pairs into ``folder``; see :meth:`TrainingPairWriter.save` for the options."""
    return TrainingPairWriter(folder).save(image, labels, **options)
