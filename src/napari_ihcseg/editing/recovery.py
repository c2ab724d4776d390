"""Autosaved corrections not yet saved by the user: one recovery file per image.

While a person corrects nuclei, the Correct and Count widgets write the
labels and the edit log (:class:`~napari_ihcseg.editing.tracking.EditTracker`),
and in count mode the counted points, to a per-user folder every few seconds; after a crash the widget offers to
restore them. Files are written atomically, and an unreadable one counts as
none, so a damaged file never blocks work.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_ihcseg._atomic import atomic_path, output_folder
from napari_ihcseg.io.names import image_stem, safe_name

from .tracking import EditTracker, utc_timestamp

__all__ = ["RecoveryInfo", "RecoveryStore", "default_recovery_dir", "recovery_key"]


def default_recovery_dir() -> Path:
    """The per-user folder for recovery files (e.g. ``~/.cache/napari-ihcseg/recovery``)."""
    try:
        from platformdirs import user_cache_path

        return user_cache_path("napari-ihcseg", appauthor=False) / "recovery"
    except ImportError:  # platformdirs comes with napari; the core works without it
        return Path.home() / ".cache" / "napari-ihcseg" / "recovery"


def recovery_key(source, shape, origin=(0, 0)) -> str:
    """A stable key for one image: its absolute path (or name), its shape, and where it lies in the slide.

    ``origin`` (row, col) tells apart fields of view of one slide: two
    fields of the same size from one file keep their corrections apart.
    """
    import hashlib

    text = str(source) if source is not None else "unnamed"
    if source is not None and ("/" in text or "\\" in text):
        text = str(Path(text).expanduser().resolve())
    where = f"|{int(origin[0])},{int(origin[1])}" if tuple(int(v) for v in origin) != (0, 0) else ""
    digest = hashlib.sha1(f"{text}|{tuple(int(s) for s in shape)}{where}".encode()).hexdigest()[:16]
    return f"{safe_name(image_stem(str(source)) if source is not None else 'image')}-{digest}"


@dataclass(frozen=True)
class RecoveryInfo:
    """What a recovery file holds, read without loading the labels."""

    key: str
    path: Path
    source: str | None
    shape: tuple[int, ...]
    saved_at: str
    n_edits: int
    n_points: int = 0


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
    >>> store.points(key) is None  # saved without counted points
    True
    >>> store.clear(key), store.pending(key)
    (True, None)
    """

    def __init__(self, folder=None) -> None:
        self.folder = output_folder(default_recovery_dir() if folder is None else folder, what="recovery folder")

    def path_for(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"invalid recovery key {key!r}")
        return self.folder / f"{key}.npz"

    def save(self, key: str, labels: np.ndarray, tracker, *, source=None, points=None) -> Path:
        """Write the labels and the edit log of ``tracker`` (an :class:`~napari_ihcseg.editing.EditTracker`).

        ``points``, optional, is ``(coords, classes)``: the nuclei counted in
        count mode, (N, 2) row and column in the labels' pixels, and each
        one's class text (``""`` for none yet); :meth:`points` reads them back.
        """
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels to recover must be a 2-D integer array, got {labels.dtype} {labels.shape}")
        meta = {"key": key, "source": None if source is None else str(source), "shape": list(labels.shape),
                "saved_at": utc_timestamp(), "edits": tracker.to_dict()}
        arrays = {}
        if points is not None:
            coords, classes = np.asarray(points[0], float).reshape(-1, 2), [str(c) for c in points[1]]
            if len(classes) != len(coords):
                raise ValueError(f"{len(coords)} counted points but {len(classes)} classes")
            arrays["points"], meta["point_classes"] = coords, classes
        path = self.path_for(key)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, labels=labels, meta=np.array(json.dumps(meta)), **arrays)
        return path

    def _meta(self, path: Path) -> dict:
        with np.load(path, allow_pickle=False) as npz:
            return json.loads(str(npz["meta"]))

    def _info(self, path: Path, meta: dict) -> RecoveryInfo:
        return RecoveryInfo(meta["key"], path, meta.get("source"), tuple(meta["shape"]), meta["saved_at"],
                            len(meta.get("edits", {}).get("log", [])), len(meta.get("point_classes", ())))

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
        path, arrays, meta = self._load(key, "labels")
        return arrays["labels"], EditTracker.from_dict(meta.get("edits", {})), self._info(path, meta)

    def points(self, key: str) -> tuple[np.ndarray, list[str]] | None:
        """The counted points saved for ``key``, ``(coords, classes)``, or ``None`` if it has none.

        Raises
        ------
        FileNotFoundError
            If there is nothing to restore.
        """
        _path, arrays, meta = self._load(key, "points")
        if "point_classes" not in meta:
            return None
        return np.asarray(arrays["points"], float).reshape(-1, 2), list(meta["point_classes"])

    def _load(self, key: str, *names: str) -> tuple[Path, dict[str, np.ndarray], dict]:
        """The recovery file of ``key``, the arrays ``names`` it holds, and its metadata."""
        path = self.path_for(key)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no recovery file")
        with np.load(path, allow_pickle=False) as npz:
            return path, {n: npz[n] for n in names if n in npz.files}, json.loads(str(npz["meta"]))

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
