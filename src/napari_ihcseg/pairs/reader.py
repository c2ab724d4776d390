"""Reading a training-pair folder back as :class:`~napari_ihcseg.data.sample.Sample` objects.

The folder is the one :mod:`napari_ihcseg.pairs.writer` writes (the layout is
in :mod:`napari_ihcseg.pairs.layout`); ``dataset.json`` is checked by the
same :func:`~napari_ihcseg.pairs.layout.check_manifest` the writer uses.

:func:`read_pairs_folder` skips a pair with a problem (a missing or
unreadable file, a mask whose shape differs from its image, a bad points
CSV) with one line naming the file, and names the files ``dataset.json``
does not list, which it ignores; :func:`load_pairs_folder` stops at the first
bad pair instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_ihcseg.data.sample import Sample, read_sample_image
from napari_ihcseg.io.labels import read_labels
from napari_ihcseg.io.points import points_outside, read_points_csv
from napari_ihcseg.pixel_size import check_pixel_size_um

from .layout import IMAGE_SUFFIX, IMAGES_DIR, MANIFEST, MASK_SUFFIX, MASKS_DIR, inside, pair_stem, read_manifest
from .manifest import unlisted_files

__all__ = ["PairsFolder", "load_pairs_folder", "read_pairs_folder"]


@dataclass
class PairsFolder:
    """What :func:`read_pairs_folder` found: the samples, the pairs skipped and why, the files ignored."""

    folder: Path
    samples: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unlisted: list[Path] = field(default_factory=list)

    def unlisted_note(self) -> str | None:
        """One line on the files ``dataset.json`` does not list (None if there are none)."""
        if not self.unlisted:
            return None
        first = self.unlisted[0].relative_to(self.folder)
        return (f"{self.folder}: {len(self.unlisted)} file(s) that {MANIFEST} does not list are ignored "
                f"(e.g. {first}); a save that did not finish leaves such files, save those pairs again to use them")


def read_pairs_folder(path: str | Path) -> PairsFolder:
    """Read a training-pair folder, skipping the pairs with a problem.

    Parameters
    ----------
    path : path-like
        A folder as :func:`load_pairs_folder` describes it.

    Returns
    -------
    PairsFolder
        The samples (as :func:`load_pairs_folder` returns them), one line per
        skipped pair naming the file and the problem, and the files that
        ``dataset.json`` does not list (ignored).

    Raises
    ------
    ValueError
        If ``dataset.json`` is refused, the layout is wrong, a path leads out
        of the folder, or the folder holds no pair at all.
    """
    return _read(Path(path).expanduser(), strict=False)


def load_pairs_folder(path: str | Path) -> list[Sample]:
    """Read a training-pair folder written by the napari widget.

    Parameters
    ----------
    path : path-like
        Folder with ``images/<id>.png``, ``masks/<id>.tif`` (``uint32``
        instances), ``dataset.json`` and, for counted pairs,
        ``points/<id>.csv``. The folder names and suffixes recorded in
        ``dataset.json`` are honoured; when it has a ``pairs`` list, exactly
        those are read (with their own stain and source; files it does not
        list are ignored), otherwise every image with a mask of the same id.

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
        :func:`read_pairs_folder` skips such pairs instead.
    """
    return _read(Path(path).expanduser(), strict=True).samples


def _read(root: Path, *, strict: bool) -> PairsFolder:
    meta = read_manifest(root)
    image_suffix = meta.get("image_suffix") or IMAGE_SUFFIX
    mask_suffix = meta.get("mask_suffix") or MASK_SUFFIX
    images_dir = inside(root, meta.get("images_dir") or IMAGES_DIR, "images_dir")
    masks_dir = inside(root, meta.get("masks_dir") or MASKS_DIR, "masks_dir")
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise ValueError(f"{d}: missing; a training-pair folder needs {IMAGES_DIR}/ and {MASKS_DIR}/")
    found = PairsFolder(root)
    entries = meta.get("pairs")
    if isinstance(entries, list):  # exactly the pairs listed; other files are not (yet) pairs
        pairs = {str(p["id"]): p for p in entries}
        found.unlisted = unlisted_files(root, meta)
    else:
        image_ids = _ids(images_dir, image_suffix)
        mask_ids = _ids(masks_dir, mask_suffix)
        if image_ids != mask_ids:
            if strict:
                missing = sorted(image_ids ^ mask_ids)[:5]
                raise ValueError(f"{root}: images and masks do not pair up (unmatched ids: {', '.join(missing)})")
            found.skipped += [f"{images_dir / (i + image_suffix)}: no mask of the same id in {masks_dir.name}/"
                              for i in sorted(image_ids - mask_ids)]
            found.skipped += [f"{masks_dir / (i + mask_suffix)}: a mask without its image in {images_dir.name}/"
                              for i in sorted(mask_ids - image_ids)]
        pairs = {pid: {"id": pid} for pid in image_ids & mask_ids}
    if not pairs and not found.skipped:
        raise ValueError(f"{root}: no training pairs in {images_dir.name}/ and {masks_dir.name}/"
                         + (f"; {MANIFEST} lists none, and {len(found.unlisted)} file(s) there are not listed "
                            "(a save that did not finish leaves such files): save those pairs again"
                            if found.unlisted else ""))
    layout = {"image": (images_dir, image_suffix), "mask": (masks_dir, mask_suffix)}
    for pid in sorted(pairs):
        paths = _paths(root, pid, pairs[pid], layout)  # a path out of the folder refuses the folder
        try:
            found.samples.append(_sample(root, meta, pid, pairs[pid], paths))
        except (ValueError, OSError) as exc:
            if strict:
                raise
            found.skipped.append(_one_line(exc))
    return found


def _ids(folder: Path, suffix: str) -> set[str]:
    return {p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}") if not p.name.startswith(".")}


def _one_line(exc: BaseException) -> str:
    """The message of ``exc``, naming its file (an :class:`OSError` names it apart)."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _paths(root: Path, pid: str, entry: dict, layout: dict) -> dict[str, Path]:
    """A pair's files: its entry's own paths where it lists them, else those of the folder's layout."""
    paths = {key: inside(root, entry.get(key) or (folder.relative_to(root) / f"{pid}{suffix}"),
                         f"pair {pid!r} {key}")
             for key, (folder, suffix) in layout.items()}
    if entry.get("points"):  # counts kept beside the mask (count mode)
        paths["points"] = inside(root, entry["points"], f"pair {pid!r} points")
    return paths


def _sample(root: Path, meta: dict, pid: str, entry: dict, paths: dict[str, Path]) -> Sample:
    """One pair read from ``paths``; a problem raises a one-line :class:`ValueError` naming the file."""
    for p in paths.values():
        if not p.is_file():
            raise ValueError(f"{p}: listed in {root / MANIFEST} but missing")
    image_path, mask_path = paths["image"], paths["mask"]
    image = read_sample_image(image_path)
    labels = read_labels(mask_path)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"{mask_path}: shape {labels.shape} differs from its image {image.shape[:2]}")
    stain = str(entry.get("stain") or meta.get("stain") or "")
    group = _group(root, entry.get("source") or meta.get("source"), pid)
    points = classes = None
    if "points" in paths:
        points, positive = read_points_csv(paths["points"])
        h, w = image.shape[:2]
        outside = points_outside(points, (h, w))
        if outside.any():
            raise ValueError(f"{paths['points']}: {int(outside.sum())} point(s) lie outside its image "
                             f"{image_path.name} ({h} x {w})")
        classes = positive.astype(np.int8)
    return Sample(image, labels, name=f"{root.name}/{pid}", source="pairs", stain=stain,
                  group=group, points=points, point_classes=classes,
                  pixel_size_um=_recorded_pixel_size(entry, meta))


def _group(root: Path, source, pid: str) -> str:
    """The image a pair was cut from, so that a split keeps all its pairs on one side.

    A recorded file path names it, whichever folder holds the pairs (one
    slide's pairs saved into two folders are one image); a name without a
    path, or none (the tiles of an image not read from a file, named by their
    stem), is one image within its folder.
    """
    if source and Path(str(source)).is_absolute():
        return str(Path(str(source)))
    return f"{root.name}:{source or pair_stem(pid)}"


def _recorded_pixel_size(entry: dict, meta: dict) -> float | None:
    """The pixel size the manifest records for a pair (its own, else the folder's); ``None`` if none is usable."""
    value = entry.get("pixel_size_um", meta.get("pixel_size_um"))
    try:
        return check_pixel_size_um(value) if value is not None else None
    except ValueError:
        return None
