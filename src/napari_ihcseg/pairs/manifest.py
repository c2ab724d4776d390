"""Keeping ``dataset.json`` true while pairs are written, and the data it does not list.

``dataset.json`` is the list of complete pairs. The writer
(:mod:`~napari_ihcseg.pairs.writer`) writes it before the first file of a new
folder, so that a folder it is filling is always recognised as a
training-pair folder; it takes a pair out of the list before replacing its
files and lists a pair only once all its files are in place. Files that the
list does not name, such as those a save that did not finish leaves behind,
are no pairs: the reader (:mod:`~napari_ihcseg.pairs.reader`) ignores them
and says so, and a later save of the same pairs replaces them.

A folder that already holds training data without a ``dataset.json`` listing
it (a lab's own ``images/`` + ``masks/``, a Cellpose or QuPath folder) is
refused by the writer: a ``dataset.json`` added there would hide that data
from training.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from napari_ihcseg._atomic import write_json_atomic

from .layout import (
    IMAGE_SUFFIX,
    IMAGE_SUFFIXES,
    IMAGES_DIR,
    MANIFEST,
    MASK_SUFFIX,
    MASKS_DIR,
    POINTS_DIR,
    POINTS_SUFFIX,
    SHARED_KEYS,
    SavedPair,
    inside,
    now,
)

__all__ = ["check_no_foreign_data", "foreign_data", "listed_ids", "unlisted_files", "with_pairs",
           "write_manifest"]

def _visible_files(folder: Path) -> list[Path]:
    """The files in ``folder`` whose names do not start with a dot (temporary files do); none if it is missing."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())


def _folders(root: Path, meta: dict | None) -> list[tuple[str, Path]]:
    meta = meta or {}
    names = (meta.get("images_dir") or IMAGES_DIR, meta.get("masks_dir") or MASKS_DIR, POINTS_DIR)
    return [(name, inside(root, name, key)) for name, key in zip(names, ("images_dir", "masks_dir", "points"))]


def listed_ids(meta: dict) -> list[str]:
    """The ids of the pairs ``dataset.json`` lists (none when it has no ``pairs`` list)."""
    return [str(p["id"]) for p in meta.get("pairs") or []]


def foreign_data(folder: Path, meta: dict | None) -> str | None:
    """What training data ``folder`` holds that no ``dataset.json`` list covers, in words; None if none.

    Parameters
    ----------
    folder : Path
        A dataset folder.
    meta : dict or None
        Its ``dataset.json`` (checked), or None if it has none.

    Notes
    -----
    A ``dataset.json`` with a ``pairs`` list covers the folder: files it does
    not list are no pairs. Without the list (a ``dataset.json`` written by
    hand), every image with a mask is a pair, and without a ``dataset.json``
    any file in ``images/``, ``masks/`` or ``points/``, or an image in the
    folder itself, is data of another layout.
    """
    if meta is not None and isinstance(meta.get("pairs"), list):
        return None
    parts = [f"{name}/ holds {len(files)} file(s)" for name, d in _folders(folder, meta)
             if (files := _visible_files(d))]
    if meta is None:
        flat = [p for p in _visible_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES]
        if flat:
            parts.append(f"{len(flat)} image file(s) in it, e.g. {flat[0].name}")
    return ", ".join(parts) or None


def check_no_foreign_data(folder: Path, meta: dict | None) -> None:
    """Refuse to write pairs into ``folder`` when it holds training data that ``dataset.json`` would hide.

    Raises
    ------
    ValueError
        One line naming the folder and what it holds.
    """
    found = foreign_data(folder, meta)
    if found:
        whose = f"that its {MANIFEST} does not list" if meta is not None else f"and no {MANIFEST}"
        raise ValueError(f"{folder}: already holds training data ({found}) {whose}; saving pairs here "
                         "would leave that data out of training. Choose another (new or empty) folder "
                         "for the training pairs")


def unlisted_files(root: Path, meta: dict) -> list[Path]:
    """Files in the pair folders of ``root`` that no entry of ``dataset.json`` names.

    Only for a ``dataset.json`` with a ``pairs`` list (otherwise every image
    with a mask is a pair). Hidden files (temporary files) are left out.
    """
    entries = meta.get("pairs")
    if not isinstance(entries, list):
        return []
    ids = set(listed_ids(meta))
    named = {inside(root, entry[key], f"pair {str(entry['id'])!r} {key}")
             for entry in entries for key in ("image", "mask", "points") if entry.get(key)}
    suffixes = (meta.get("image_suffix") or IMAGE_SUFFIX, meta.get("mask_suffix") or MASK_SUFFIX, POINTS_SUFFIX)
    return [p for (_, d), suffix in zip(_folders(root, meta), suffixes) for p in _visible_files(d)
            if p not in named and not (p.name.endswith(suffix) and p.name[: -len(suffix)] in ids)]


def with_pairs(meta: dict, *, add: Iterable[SavedPair] = (), drop: Collection[str] = (),
               drop_empty: bool | None = None) -> dict:
    """``meta`` with the pairs ``drop`` taken out and ``add`` listed (replacing pairs of the same id).

    The settings every pair shares are repeated at the top level (None
    where the pairs differ); each pair's own entry is authoritative.
    """
    add = list(add)
    gone = set(drop) | {p.id for p in add}
    pairs = [p for p in meta.get("pairs") or [] if str(p["id"]) not in gone] + [p.to_dict() for p in add]
    meta["pairs"] = pairs
    for key in SHARED_KEYS:
        values = {p.get(key) for p in pairs}
        meta[key] = values.pop() if len(values) == 1 else None
    if drop_empty is not None:
        meta["drop_empty"] = drop_empty if meta.get("drop_empty") in (None, drop_empty) else None
    meta["updated"] = now()
    return meta


def write_manifest(folder: Path, meta: dict) -> Path:
    """Write ``dataset.json`` into ``folder`` atomically (creating the folder)."""
    return write_json_atomic(folder / MANIFEST, meta)
