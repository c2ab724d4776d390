"""The outputs of one image, replaced as one unit: all new, or all old.

An image's outputs (``<stem>.labels.tif``, ``<stem>.cells.csv``, ...,
``<stem>.summary.json``) belong together: labels of one run beside the
summary of another would be a wrong result that looks finished.
:class:`OutputSet` therefore writes every new file into a hidden staging
folder beside them (``.<stem>.ihcseg-new-*``) and touches the old set only
once all are written:

1. the old files of the stem, the summary first, move into a hidden backup
   folder (``.<stem>.ihcseg-old-*``), which is then marked complete;
2. the new files move in, the summary last;
3. the backup folder is removed.

A run that fails before step 1 leaves the old set as it was. An error during
steps 1–2 moves everything back. A process killed during steps 1–2 leaves the
backup folder, and :func:`recover` (called before the next run of that stem
and before a batch decides what is done) restores the old set from it. In
every case the folder holds one run's complete set or no summary at all, and
only a summary marks a set as finished.

Errors that the disk is full name the output file that could not be written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from napari_ihcseg._atomic import DISK_FULL, disk_full_error

#: Hidden folder of a set being written: ``.<stem>`` + this + a random part.
STAGE_TAG = ".ihcseg-new-"
#: Hidden folder holding the old set while it is replaced.
BACKUP_TAG = ".ihcseg-old-"
#: File in the backup folder once every old file is in it.
_MOVED = ".moved"


def check_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The output stem of each input; refuses two inputs that would write the same outputs.

    Stems are compared without regard to case, since macOS and Windows
    folders do not tell ``X.png`` from ``x.png``.

    Raises
    ------
    ValueError
        Naming every pair of inputs with the same stem.

    Examples
    --------
    >>> check_stems(["a/x.png", "b/y.tif"])
    ['x', 'y']
    >>> check_stems(["a/x.png", "b/x.tif"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: inputs would write the same outputs: a/x.png and b/x.tif (stem 'x'); rename one, ...
    """
    from napari_ihcseg.io.names import image_stem

    seen: dict[str, Path] = {}
    stems, clashes = [], []
    for path in map(Path, paths):
        stem = image_stem(path)
        key = stem.casefold()
        if key in seen:
            clashes.append(f"{seen[key]} and {path} (stem {stem!r})")
        seen.setdefault(key, path)
        stems.append(stem)
    if clashes:
        raise ValueError("inputs would write the same outputs: " + "; ".join(clashes)
                         + "; rename one, or give each its own output folder")
    return stems


def _names(stem: str, suffixes: Iterable[str]) -> list[str]:
    return [f"{stem}{suffix}" for suffix in suffixes]


def _move_back(backup: Path, out_dir: Path, names: Iterable[str]) -> None:
    """Restore the old set from ``backup``: new files of the stem out, old ones back in."""
    if (backup / _MOVED).exists():  # every old file had moved: what is left of the stem is new
        for name in names:
            path = out_dir / name
            if path.is_file() or path.is_symlink():  # a folder of that name is not an output: left alone
                path.unlink()
    for entry in backup.iterdir():
        if entry.name != _MOVED:
            os.replace(entry, out_dir / entry.name)
    shutil.rmtree(backup, ignore_errors=True)


def recover(out_dir: str | os.PathLike, stem: str, suffixes: Iterable[str]) -> bool:
    """Restore the old set of ``stem`` if a replacement was killed half-way; clear leftovers.

    Also removes staging folders and temporary files that killed runs left.

    Returns
    -------
    bool
        True when an interrupted replacement was rolled back.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return False
    suffixes = list(suffixes)
    restored = False
    temp_prefixes = tuple(f".{name}." for name in _names(stem, suffixes))
    for entry in sorted(out_dir.iterdir()):
        name = entry.name
        if name.startswith(f".{stem}{BACKUP_TAG}") and entry.is_dir():
            _move_back(entry, out_dir, _names(stem, suffixes))
            restored = True
        elif name.startswith(f".{stem}{STAGE_TAG}") and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif name.startswith(temp_prefixes):
            # a temporary file (or slide store) of a killed atomic write
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    return restored


class OutputSet:
    """Write the outputs of one image so that they replace the old ones as a unit.

    Parameters
    ----------
    out_dir : path-like
        The output folder.
    stem : str
        The image's output stem.
    suffixes : mapping of str to str
        Output key -> file-name ending (e.g. :data:`napari_ihcseg.pipeline.OUTPUT_SUFFIXES`);
        every file of the stem with one of these endings belongs to the set.
    last : str
        The key written last, whose presence marks a finished set (the summary).

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> with OutputSet(out, "x", {"a": ".a.txt", "summary": ".summary.json"}) as paths:
    ...     _ = paths["a"].write_text("new"); _ = paths["summary"].write_text("{}")
    >>> sorted(p.name for p in out.iterdir())
    ['x.a.txt', 'x.summary.json']
    """

    def __init__(self, out_dir: str | os.PathLike, stem: str, suffixes: Mapping[str, str], *,
                 last: str = "summary") -> None:
        self.out_dir = Path(out_dir)
        self.stem = stem
        self.suffixes = dict(suffixes)
        self.last = last
        self.stage = self.out_dir / f".{stem}{STAGE_TAG}{uuid.uuid4().hex[:8]}"

    @property
    def paths(self) -> dict[str, Path]:
        """Where each output is written (in the staging folder), by key."""
        return {key: self.stage / f"{self.stem}{suffix}" for key, suffix in self.suffixes.items()}

    def __enter__(self) -> dict[str, Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        recover(self.out_dir, self.stem, self.suffixes.values())
        self.stage.mkdir()
        return self.paths

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if exc is None:
                self._commit()
        except OSError as error:
            if error.errno not in DISK_FULL:
                raise
            raise self._naming_output(error) from error
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise self._naming_output(exc) from exc

    def _naming_output(self, error: OSError) -> OSError:
        """A full-disk error naming the output file (not its staging copy); other errors as they are."""
        if error.errno not in DISK_FULL:
            return error
        written = getattr(error, "path", None) or error.filename
        name = Path(written).name if written else ""
        return disk_full_error(self.out_dir / name if name.startswith(self.stem) else self.out_dir, error)

    def _commit(self) -> None:
        names = _names(self.stem, self.suffixes.values())
        last_name = f"{self.stem}{self.suffixes[self.last]}"
        new = sorted((p.name for p in self.stage.iterdir() if p.is_file()), key=lambda n: n == last_name)
        old = sorted((n for n in names if (self.out_dir / n).is_file()), key=lambda n: n != last_name)
        backup = self.out_dir / f".{self.stem}{BACKUP_TAG}{uuid.uuid4().hex[:8]}"
        backup.mkdir()
        try:
            for name in old:  # the summary first: from here on the set never looks finished
                os.replace(self.out_dir / name, backup / name)
            (backup / _MOVED).touch()
            for name in new:  # the summary last
                os.replace(self.stage / name, self.out_dir / name)
        except BaseException:
            with contextlib.suppress(OSError):
                _move_back(backup, self.out_dir, names)
            raise
        shutil.rmtree(backup, ignore_errors=True)
