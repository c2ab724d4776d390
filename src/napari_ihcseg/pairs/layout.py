"""The training-pair folder: its names, its ``dataset.json`` and the one check of it.

A training-pair folder holds ``images/<id>.png`` (RGB), ``masks/<id>.tif``
(``uint32`` instance labels, written by :func:`napari_ihcseg.io.write_labels`;
the mask and contour targets are derived from them by
:mod:`napari_ihcseg.data.targets`), ``points/<id>.csv`` where a person counted
nuclei by clicking (count mode; a marker CSV ``type,x,y`` in the pair's own
pixels, :mod:`napari_ihcseg.io.points`), and ``dataset.json``, which records
how each pair was made so that another person can rebuild the same set.

The writer (:mod:`~napari_ihcseg.pairs.writer`) and the reader
(:mod:`~napari_ihcseg.pairs.reader`) take every name from here and check
``dataset.json`` with the one :func:`check_manifest`, so a manifest one of
them refuses, the other refuses with the same message.

``dataset.json``
----------------
``format`` (``"napari-ihcseg-pairs"``, required),
``version`` (1), ``images_dir``, ``masks_dir``, ``image_suffix`` (``".png"``),
``mask_suffix`` (``".tif"``), ``mask_dtype`` (``"uint32"``), ``created``,
``updated`` and ``pairs``, a list with one entry per pair: ``id``, ``image``
and ``mask`` (paths relative to the folder), ``region`` (``[y0, x0, y1, x1]``
in pixels of the source image), ``mode`` (``"whole"``, ``"region"`` or
``"tiles"``), ``tile_size`` and ``stride`` (``null`` unless tiled),
``n_nuclei``, ``corrected`` (a person drew, changed or deleted a nucleus in
it), ``n_corrected``, ``corrected_at`` (ISO 8601, UTC), ``source``, ``stain``,
``pixel_size_um``, ``model``, ``saved_at``, and, where a person counted nuclei
by clicking, ``points`` (``points/<id>.csv``; ``null`` without counts),
``n_points`` and ``points_region`` (the part of the source image,
``[y0, x0, y1, x1]``, that the points cover). The keys ``mode``,
``tile_size``, ``stride``, ``source``, ``stain``, ``pixel_size_um``, ``model``
and ``drop_empty`` are repeated at the top level when every pair agrees, and
are ``null`` there when they differ; the per-pair values are authoritative.
The ``pairs`` list is the list of complete pairs (see
:mod:`~napari_ihcseg.pairs.manifest`): files it does not name are no pairs.
A ``dataset.json`` without a ``pairs`` key (written by hand) makes every
image with a mask of the same id a pair.
"""

from __future__ import annotations

import re

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from napari_ihcseg._atomic import output_folder
from napari_ihcseg._json_file import read_json

#: ``dataset.json`` identifies itself with these.
FORMAT = "napari-ihcseg-pairs"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
IMAGES_DIR, MASKS_DIR, POINTS_DIR = "images", "masks", "points"
#: File endings read as images in a training-data folder of any layout (:mod:`napari_ihcseg.datasets.layouts`);
#: slide formats are not training data.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
IMAGE_SUFFIX, MASK_SUFFIX, POINTS_SUFFIX = ".png", ".tif", ".csv"
MASK_DTYPE = "uint32"
MODES = ("whole", "region", "tiles")
TILE_SIZES = (256, 512)
#: Keys repeated at the top of ``dataset.json`` when every pair agrees.
SHARED_KEYS = ("mode", "tile_size", "stride", "source", "stain", "pixel_size_um", "model")


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


def now() -> str:
    """The current time as ``dataset.json`` records it (ISO 8601, UTC, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_manifest() -> dict:
    """The ``dataset.json`` of a folder without pairs yet."""
    return {"format": FORMAT, "version": FORMAT_VERSION, "images_dir": IMAGES_DIR, "masks_dir": MASKS_DIR,
            "image_suffix": IMAGE_SUFFIX, "mask_suffix": MASK_SUFFIX, "mask_dtype": MASK_DTYPE,
            **dict.fromkeys(SHARED_KEYS), "drop_empty": None, "created": now(), "updated": None, "pairs": []}


def check_folder(folder) -> Path:
    """An absolute, user-chosen folder (``~`` expanded); relative paths are refused."""
    if folder is None or str(folder).strip() == "":
        raise ValueError("no dataset folder given; choose a folder to save the training pairs in")
    return output_folder(folder, what="dataset folder")


def pair_id(stem: str, box, *, mode: str, tile: int | None = None) -> str:
    """The file name (without suffix) of the pair cut at ``box`` (``y0, x0, y1, x1``).

    >>> pair_id("case", (0, 256, 256, 512), mode="tiles", tile=256)
    'case_t256_y00000_x00256'
    """
    y0, x0, y1, x1 = box
    if mode == "whole":
        return stem
    if mode == "region":
        return f"{stem}_y{y0}_x{x0}_{y1 - y0}x{x1 - x0}"
    return f"{stem}_t{tile}_y{y0:05d}_x{x0:05d}"


def pair_stem(pid: str) -> str:
    """The stem a pair id was made from (:func:`pair_id` undone).

    >>> pair_stem("case_t256_y00000_x00256"), pair_stem("case_y10_x20_64x64"), pair_stem("case")
    ('case', 'case', 'case')
    """
    return re.sub(r"(_y\d+_x\d+_\d+x\d+|_t\d+_y\d+_x\d+)$", "", pid)


def recorded_source(source) -> str | None:
    """A pair's source as ``dataset.json`` records it: the path of a file that exists made absolute (napari
    keeps a path as it was typed, often relative to the folder napari started in); anything else (a layer
    name, a URL, an absolute path) as it is."""
    if source is None:
        return None
    text = str(source)
    if text and "://" not in text:
        path = Path(text).expanduser()
        try:
            if not path.is_absolute() and path.is_file():
                return str(path.resolve())
        except OSError:
            pass
    return text


def stem_free_of_other_files(meta: dict, stem: str, source: str) -> str:
    """``stem``, or the first of ``stem-2``, ``stem-3``... that no pair ``meta`` lists from another source file.

    >>> meta = {"pairs": [{"id": "case_t256_y00000_x00000", "source": "/a/case.tif"}]}
    >>> stem_free_of_other_files(meta, "case", "/b/case.tif"), stem_free_of_other_files(meta, "case", "/a/case.tif")
    ('case-2', 'case')
    """
    taken = {pair_stem(str(p["id"])) for p in meta.get("pairs") or []
             if not _same_source(p.get("source") or meta.get("source"), source)}
    free, n = stem, 1
    while free in taken:
        n += 1
        free = f"{stem}-{n}"
    return free


def _same_source(recorded, source: str) -> bool:
    """Whether a pair's recorded source is ``source`` (paths compared resolved); an unrecorded one may be."""
    if not recorded or recorded == source:
        return True
    try:
        return Path(recorded).expanduser().resolve() == Path(source).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def inside(root: Path, relative, what: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` (no absolute path, no ``..`` out of it).

    The check is on the path as written, so a folder the user links into
    the dataset still works.
    """
    text = str(relative)
    normal = os.path.normpath(text)
    if not text or os.path.isabs(text) or Path(text).drive or normal == ".." or normal.startswith(".." + os.sep):
        raise ValueError(f"{root / MANIFEST}: {what} {text!r} points outside the dataset folder; "
                         f"paths in {MANIFEST} must stay inside it")
    return root / normal


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_manifest(meta: dict, path: Path) -> dict:
    """Check the content of ``dataset.json`` read from ``path``; return it unchanged.

    The one check of the format, used by both the writer and the reader.

    Raises
    ------
    ValueError
        If ``format`` is not :data:`FORMAT` (also when it is missing: a
        ``dataset.json`` of another tool is not a training-pair folder), the
        ``version`` is newer than this one, ``tile_size`` or ``stride`` is not
        a positive integer or null, a folder, suffix or ``pairs`` entry is
        malformed, lists one pair twice, or a path in it leads out of the
        folder. The message is one line naming the file.

    Examples
    --------
    >>> check_manifest({"format": "nnunet"}, Path("/d/dataset.json"))
    Traceback (most recent call last):
    ValueError: /d/dataset.json: not a napari-ihcseg training-pair folder (format 'nnunet', expected 'napari-ihcseg-pairs')
    """
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a napari-ihcseg training-pair folder (format {meta.get('format')!r}, "
                         f"expected {FORMAT!r})")
    version = meta.get("version", FORMAT_VERSION)
    if not _positive_int(version) or version > FORMAT_VERSION:
        raise ValueError(f"{path}: training-pair format version {version!r} is not one this version of "
                         f"napari-ihcseg reads (1 to {FORMAT_VERSION})")
    for key in ("tile_size", "stride"):
        value = meta.get(key)
        if value is not None and not _positive_int(value):
            raise ValueError(f"{path}: {key!r} must be a positive integer or null, got {value!r}")
    for key in ("images_dir", "masks_dir", "image_suffix", "mask_suffix"):
        value = meta.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{path}: {key!r} must be a non-empty string or null, got {value!r}")
    root = path.parent
    for key in ("images_dir", "masks_dir"):
        if meta.get(key):
            inside(root, meta[key], key)
    pairs = meta.get("pairs")
    if pairs is not None:
        if not isinstance(pairs, list) or not all(isinstance(p, dict) and "id" in p for p in pairs):
            raise ValueError(f"{path}: 'pairs' must be a list of objects with an 'id'")
        seen: set[str] = set()
        for entry in pairs:
            pid = str(entry["id"])
            if pid in seen:  # one of the two would be dropped without a word
                raise ValueError(f"{path}: lists the pair {pid!r} twice")
            seen.add(pid)
            for key in ("image", "mask", "points"):
                if entry.get(key):
                    inside(root, entry[key], f"pair {pid!r} {key}")
    return meta


def read_manifest(folder) -> dict:
    """Read and check ``dataset.json`` of a training-pair folder.

    Raises
    ------
    ValueError
        If the folder or the file is missing, the file is not JSON, or
        :func:`check_manifest` refuses it.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder (training-pair folder)")
    path = root / MANIFEST
    if not path.is_file():
        raise ValueError(f"{path}: missing; a training-pair folder needs {IMAGES_DIR}/, {MASKS_DIR}/ and {MANIFEST}")
    return check_manifest(read_json(path), path)
