"""Find the slides of a batch: a folder, a slide list, or one image.

:func:`find_slides` turns the input of ``ihcseg batch`` into absolute slide
paths; a folder is scanned for :data:`SLIDE_EXTENSIONS`, leaving out hidden
files and the outputs of an earlier run. Before a batch starts, the slides'
output stems are checked not to clash, so no two slides write the same
``<out>/<stem>.*`` files.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_ihcseg.pipeline import OUTPUT_SUFFIXES

#: File endings (lower case) taken as slides when a folder is scanned.
SLIDE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".btf", ".ome.tif", ".ome.tiff")


def _is_slide_name(name: str) -> bool:
    lower = name.lower()
    if name.startswith(".") or not lower.endswith(SLIDE_EXTENSIONS):
        return False
    # Outputs of an earlier run (when --out is the input folder) are not slides.
    return not any(lower.endswith(s) for k, s in OUTPUT_SUFFIXES.items() if k != "summary")


def find_slides(input: str | os.PathLike) -> list[Path]:
    """The slides of a folder, a list file, or a single image.

    Parameters
    ----------
    input : path-like
        A folder: its image files (:data:`SLIDE_EXTENSIONS`, not recursive,
        hidden files and outputs of this package left out), sorted by name.
        A text file: one path per line; relative paths are relative to the
        list's folder, blank lines and lines starting with ``#`` are ignored.
        An image file: that one slide.

    Returns
    -------
    list of Path
        Absolute paths, in order, without repeats. Paths in a list are not
        checked here: a missing one is reported as a failed slide.

    Raises
    ------
    ValueError
        If ``input`` does not exist or holds no slide.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "b.svs").write_bytes(b""), (folder / "a.png").write_bytes(b"")
    >>> _ = (folder / "notes.txt").write_text("")
    >>> [p.name for p in find_slides(folder)]
    ['a.png', 'b.svs']
    """
    path = Path(input).expanduser()
    if path.is_dir():
        slides = sorted(p for p in path.iterdir() if p.is_file() and _is_slide_name(p.name))
        if not slides:
            raise ValueError(f"{path}: no slide found (looked for {', '.join(SLIDE_EXTENSIONS)})")
        return [p.resolve() for p in slides]
    if not path.is_file():
        raise ValueError(f"{path}: no such folder or slide list")
    if _is_slide_name(path.name):
        return [path.resolve()]
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the slide list ({exc})") from None
    slides: list[Path] = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        slide = Path(text).expanduser()
        slide = (slide if slide.is_absolute() else path.parent / slide).resolve()
        if slide not in slides:
            slides.append(slide)
    if not slides:
        raise ValueError(f"{path}: the slide list names no slide")
    return slides
