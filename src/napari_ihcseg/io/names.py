"""The names derived from an image file's name."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .image import IMAGE_SUFFIXES

__all__ = ["image_stem", "safe_name"]

#: Recognised endings, longest first, so that ``.ome.tif`` wins over ``.tif``.
_ENDINGS = tuple(sorted(IMAGE_SUFFIXES, key=len, reverse=True))


def image_stem(path: str | os.PathLike) -> str:
    """The stem every output of an image is named after.

    The file name without its image extension, which may have two parts
    (``.ome.tif``); other dots are part of the name, so ``case.1.svs`` and
    ``case.2.svs`` keep apart. The CLI, the batch runner, the reader and the
    widgets all name outputs by it.

    Parameters
    ----------
    path : str or os.PathLike
        An image file (it need not exist).

    Returns
    -------
    str
        The stem; the whole name when nothing else would remain.

    Examples
    --------
    >>> image_stem("slides/case 1.ome.tif"), image_stem("case.1.svs"), image_stem("a.b.png")
    ('case 1', 'case.1', 'a.b')
    >>> image_stem("scan.ndpi")
    'scan'
    """
    name = Path(path).name
    lower = name.lower()
    for ending in _ENDINGS:
        if lower.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)]
    return Path(name).stem or name


def safe_name(text: str) -> str:
    """``text`` made safe as part of a file name on every system.

    Runs of characters other than ASCII letters, digits and ``_.-`` become
    one ``_``; leading and trailing dots and underscores go. Training-pair
    ids and recovery files are named by it.

    Examples
    --------
    >>> safe_name("case 1 (a).svs"), safe_name("..."), safe_name("Ki-67_x.1")
    ('case_1_a_.svs', 'image', 'Ki-67_x.1')
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._") or "image"
