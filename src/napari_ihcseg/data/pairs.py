"""Saving corrected nucleus labels as training pairs, safely.

A training-pair folder holds ``images/<id>.png`` (RGB), ``masks/<id>.tif``
(``uint32`` instance labels; the mask and contour targets are derived from them
by :mod:`napari_ihcseg.data.targets`) and ``dataset.json``, which records how
each pair was made so that another person can rebuild the same set: the tile
size, stride and file suffixes, the source image, stain and pixel size, the
model that made the first masks, and which pairs a human corrected, and when.

Every file is written atomically (temporary file, then rename), and an
existing pair is never replaced unless the caller passes ``overwrite=True``.

``dataset.json``
----------------
``format`` (``"napari-ihcseg-pairs"``),
``version`` (1), ``images_dir``, ``masks_dir``, ``image_suffix`` (``".png"``),
``mask_suffix`` (``".tif"``), ``mask_dtype`` (``"uint32"``), ``created``,
``updated`` and ``pairs``, a list with one entry per pair: ``id``, ``image``
and ``mask`` (paths relative to the folder), ``region`` (``[y0, x0, y1, x1]``
in pixels of the source image), ``mode`` (``"whole"``, ``"region"`` or
``"tiles"``), ``tile_size`` and ``stride`` (``null`` unless tiled),
``n_nuclei``, ``corrected`` (a person drew, changed or deleted a nucleus in
it), ``n_corrected``, ``corrected_at`` (ISO 8601, UTC), ``source``, ``stain``,
``pixel_size_um``, ``model``, ``saved_at``, and, where a person counted nuclei
by clicking (count mode), ``points`` (``points/<id>.csv``, a marker CSV
``type,x,y`` in the pair's own pixels; ``null`` without counts), ``n_points``
and ``points_region`` (the part of the source image, ``[y0, x0, y1, x1]``,
that the points cover). The keys ``mode``, ``tile_size``, ``stride``,
``source``, ``stain``, ``pixel_size_um``, ``model`` and ``drop_empty`` are
repeated at the top level when every pair agrees, and are ``null`` there when
they differ; the per-pair values are authoritative. The ``pairs`` list,
written last, is the list of complete pairs.

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

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from napari_ihcseg._atomic import atomic_path, write_json_atomic
from napari_ihcseg.inference.tiling import tile_starts
from napari_ihcseg.io.names import image_stem

#: ``dataset.json`` identifies itself with these.
FORMAT = "napari-ihcseg-pairs"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
IMAGES_DIR, MASKS_DIR, POINTS_DIR = "images", "masks", "points"
IMAGE_SUFFIX, MASK_SUFFIX = ".png", ".tif"
MODES = ("whole", "region", "tiles")
TILE_SIZES = (256, 512)


@dataclass(frozen=True)
class SavedPair:
    """One pair as recorded in ``dataset.json``.

    ``region`` is ``(y0, x0, y1, x1)`` in pixels of the source image.
    """

    id: str
    image: str
    mask: str
    region: tuple[int, int, int, int]
    mode: str
    tile_size: int | None
    stride: int | None
    n_nuclei: int
    corrected: bool
    n_corrected: int
    corrected_at: str | None
    source: str | None
    stain: str | None
    pixel_size_um: float | None
    model: str | None
    saved_at: str
    points: str | None = None
    n_points: int = 0
    points_region: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["region"] = list(self.region)
        d["points_region"] = list(self.points_region) if self.points_region is not None else None
        return d


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_folder(folder) -> Path:
    """An absolute, user-chosen folder (``~`` expanded); relative paths are refused."""
    if folder is None or str(folder).strip() == "":
        raise ValueError("no dataset folder given; choose a folder to save the training pairs in")
    path = Path(folder).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{folder}: the dataset folder must be an absolute path, not relative to the "
                         "working folder")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a folder")
    return path


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


def _stem(name: str | None, source) -> str:
    stem = name or (image_stem(str(source)) if source else "image")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "image"
    return stem


def pair_id(stem: str, box, *, mode: str, tile: int | None = None) -> str:
    """The file name (without suffix) of the pair cut at ``box``."""
    y0, x0, y1, x1 = box
    if mode == "whole":
        return stem
    if mode == "region":
        return f"{stem}_y{y0}_x{x0}_{y1 - y0}x{x1 - x0}"
    return f"{stem}_t{tile}_y{y0:05d}_x{x0:05d}"


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
        """The content of ``dataset.json`` (an empty manifest if there is none yet)."""
        if not self.manifest_path.exists():
            return {"format": FORMAT, "version": FORMAT_VERSION, "images_dir": IMAGES_DIR,
                    "masks_dir": MASKS_DIR, "image_suffix": IMAGE_SUFFIX, "mask_suffix": MASK_SUFFIX,
                    "mask_dtype": "uint32", "mode": None, "tile_size": None, "stride": None,
                    "drop_empty": None, "source": None, "stain": None, "pixel_size_um": None, "model": None,
                    "created": _now(), "updated": None, "pairs": []}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.manifest_path}: cannot read the dataset description ({exc})") from None
        if data.get("format") != FORMAT:
            raise ValueError(f"{self.manifest_path}: not a napari-ihcseg training-pair folder "
                             f"(format {data.get('format')!r})")
        return data

    def pair_ids(self) -> list[str]:
        """Ids of the pairs already in the folder."""
        return [p["id"] for p in self.manifest().get("pairs", [])]

    def _paths(self, pid: str) -> tuple[Path, Path]:
        return self.folder / IMAGES_DIR / f"{pid}{IMAGE_SUFFIX}", self.folder / MASKS_DIR / f"{pid}{MASK_SUFFIX}"

    def _points_path(self, pid: str) -> Path:
        return self.folder / POINTS_DIR / f"{pid}.csv"

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
        stem = _stem(name, source)
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
        import tifffile

        fallback = max((t for t in times.values() if t), default=None) or _now()
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
                with atomic_path(mask_path, overwrite=overwrite) as tmp:
                    tifffile.imwrite(tmp, _relabel(crop_lab), compression="zlib")
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
                float(pixel_size_um) if pixel_size_um is not None else None, model, _now(),
                f"{POINTS_DIR}/{pid}.csv" if kept is not None else None, kept or 0,
                (y0 + oy, x0 + ox, y1 + oy, x1 + ox) if kept is not None else None))
        if saved:
            self._update_manifest(saved, drop_empty=drop_empty)
        return saved

    def _write_points(self, pid: str, points: np.ndarray, positive: np.ndarray, box, *, overwrite: bool) -> int:
        """Write the points inside ``box`` to ``points/<id>.csv`` (pair pixels); returns how many."""
        from napari_ihcseg.io.points import write_points_csv

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
        for key in ("mode", "tile_size", "stride", "source", "stain", "pixel_size_um", "model"):
            values = {p.get(key) for p in pairs}
            data[key] = values.pop() if len(values) == 1 else None
        data["drop_empty"] = drop_empty if data.get("drop_empty") in (None, drop_empty) else None
        data["updated"] = _now()
        write_json_atomic(self.manifest_path, data)


def save_pairs(folder, image: np.ndarray, labels: np.ndarray, **options) -> list[SavedPair]:
    """Write training pairs into ``folder``; see :meth:`TrainingPairWriter.save` for the options."""
    return TrainingPairWriter(folder).save(image, labels, **options)


# --------------------------------------------------------------------------- recovery

def default_recovery_dir() -> Path:
    """The per-user folder for recovery files (e.g. ``~/.cache/napari-ihcseg/recovery``)."""
    try:
        from platformdirs import user_cache_path

        return user_cache_path("napari-ihcseg", appauthor=False) / "recovery"
    except ImportError:  # platformdirs comes with napari; the core works without it
        return Path.home() / ".cache" / "napari-ihcseg" / "recovery"


def recovery_key(source, shape) -> str:
    """A stable key for one image: its absolute path (or name) and its shape."""
    import hashlib

    text = str(source) if source is not None else "unnamed"
    if source is not None and ("/" in text or "\\" in text):
        text = str(Path(text).expanduser().resolve())
    digest = hashlib.sha1(f"{text}|{tuple(int(s) for s in shape)}".encode()).hexdigest()[:16]
    return f"{_stem(None, source)}-{digest}"


@dataclass(frozen=True)
class RecoveryInfo:
    """What a recovery file holds, read without loading the labels."""

    key: str
    path: Path
    source: str | None
    shape: tuple[int, ...]
    saved_at: str
    n_edits: int


class RecoveryStore:
    """Autosaved, not yet saved corrections: labels plus edit log, one file per image.

    Parameters
    ----------
    folder : path-like, optional
        Where the recovery files live (absolute). Default: :func:`default_recovery_dir`.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from napari_ihcseg.editing import EditTracker
    >>> store = RecoveryStore(tempfile.mkdtemp())
    >>> key = recovery_key("/slides/a.svs", (4, 4))
    >>> _ = store.save(key, np.eye(4, dtype=np.int32), EditTracker(), source="/slides/a.svs")
    >>> store.pending(key).shape
    (4, 4)
    >>> labels, tracker, info = store.restore(key)
    >>> store.clear(key), store.pending(key)
    (True, None)
    """

    def __init__(self, folder=None) -> None:
        self.folder = check_folder(default_recovery_dir() if folder is None else folder)

    def path_for(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"invalid recovery key {key!r}")
        return self.folder / f"{key}.npz"

    def save(self, key: str, labels: np.ndarray, tracker, *, source=None) -> Path:
        """Write the labels and the edit log of ``tracker`` (an :class:`~napari_ihcseg.editing.EditTracker`)."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels to recover must be a 2-D integer array, got {labels.dtype} {labels.shape}")
        meta = {"key": key, "source": None if source is None else str(source), "shape": list(labels.shape),
                "saved_at": _now(), "edits": tracker.to_dict()}
        path = self.path_for(key)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, labels=labels, meta=np.array(json.dumps(meta)))
        return path

    def _meta(self, path: Path) -> dict:
        with np.load(path, allow_pickle=False) as npz:
            return json.loads(str(npz["meta"]))

    def _info(self, path: Path, meta: dict) -> RecoveryInfo:
        return RecoveryInfo(meta["key"], path, meta.get("source"), tuple(meta["shape"]), meta["saved_at"],
                            len(meta.get("edits", {}).get("log", [])))

    def pending(self, key: str) -> RecoveryInfo | None:
        """The recovery waiting for ``key``, or ``None``. An unreadable file counts as none."""
        path = self.path_for(key)
        if not path.exists():
            return None
        try:
            return self._info(path, self._meta(path))
        except (OSError, ValueError, KeyError):
            return None

    def restore(self, key: str):
        """Load ``(labels, tracker, info)`` saved for ``key``.

        Raises
        ------
        FileNotFoundError
            If there is nothing to restore.
        """
        from napari_ihcseg.editing import EditTracker

        path = self.path_for(key)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no recovery file")
        with np.load(path, allow_pickle=False) as npz:
            labels = npz["labels"]
            meta = json.loads(str(npz["meta"]))
        return labels, EditTracker.from_dict(meta.get("edits", {})), self._info(path, meta)

    def clear(self, key: str) -> bool:
        """Delete the recovery file of ``key`` (after a successful save); true if there was one."""
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def list(self) -> list[RecoveryInfo]:
        """Every readable recovery file in the folder, newest first."""
        found = []
        for path in sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []:
            try:
                found.append(self._info(path, self._meta(path)))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(found, key=lambda i: i.saved_at, reverse=True)
