"""Atomic file writes: a temporary file (or folder) beside the target, then a rename.

A crash or a killed process never leaves a half-written file under the final
name, and an existing file is replaced only when ``overwrite`` is true.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

#: errno values of a full disk or an exceeded quota.
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def disk_full_error(path: str | os.PathLike, error: OSError) -> OSError:
    """An :class:`OSError` for a full disk that names the file that could not be written.

    The file is also in its ``path`` attribute.
    """
    named = OSError(error.errno, f"{path}: cannot write it, the disk is full")
    named.path = str(path)
    return named


#: What :func:`atomic_path` puts between ``.<name>.<random>`` and the suffix of its temporary file.
_PART = ".part"


def remove_stale_parts(paths) -> None:
    """Remove the temporary files a killed :func:`atomic_path` write left for the files ``paths``."""
    by_folder: dict[Path, set[str]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, set()).add(p.name)
    for folder, names in by_folder.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            stem, dot, _ = entry.name.rpartition(_PART)
            if entry.name.startswith(".") and dot and stem[1:].rpartition(".")[0] in names:
                Path(entry.path).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        The final file name. Its folder is created if needed.
    overwrite : bool
        If false and ``path`` exists, raise :class:`FileExistsError` before
        anything is written.

    Yields
    ------
    tmp : Path
        Where to write. It keeps the suffix of ``path`` so that writers that
        look at the extension (tifffile, PIL) behave.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{_PART}{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        # mkstemp creates 0600, and some writers (safetensors) create the file anew as 0600:
        # give the final file the usual permissions, after the writer is done.
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        if not overwrite and path.exists():
            raise FileExistsError(f"{path}: appeared while writing; refusing to overwrite it")
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in DISK_FULL and not hasattr(exc, "path"):
            raise disk_full_error(path, exc) from exc
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


def write_json_atomic(path: str | os.PathLike, obj, *, overwrite: bool = True) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", overwrite=overwrite)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EPERM):  # file system or kernel without it
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder path beside ``path`` (not yet created); move it onto ``path`` on success.

    On any error, the temporary folder is removed and ``path`` is left as it
    was. With ``overwrite`` an existing ``path`` is replaced, else it raises
    :class:`FileExistsError`, also when it appears while writing. On Linux
    the old and the new folder are swapped in one step, so that ``path``
    always holds one of them; elsewhere the old folder is moved aside and
    the new one moved in (and the old one moved back should that fail).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.part-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path}: appeared while writing; refusing to overwrite it")
            if _exchange(tmp, path):
                shutil.rmtree(tmp, ignore_errors=True)  # now the old folder
                return
            trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            path.rename(trash)
            try:
                tmp.rename(path)
            except BaseException:
                trash.rename(path)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def output_folder(folder, *, what: str = "output folder") -> Path:
    """A user-chosen folder to write into: absolute (``~`` expanded), and a folder if it exists.

    Paths relative to the working folder are refused, so nothing is written
    where the user did not look.

    Raises
    ------
    ValueError
        If ``folder`` is empty, relative, or an existing file; the message
        names it and says which ``what`` it was meant to be.

    Examples
    --------
    >>> output_folder("relative/out")
    Traceback (most recent call last):
    ValueError: relative/out: the output folder must be an absolute path, not relative to the working folder
    """
    if folder is None or str(folder).strip() == "":
        raise ValueError(f"no {what} given; choose one")
    path = Path(folder).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{folder}: the {what} must be an absolute path, not relative to the working folder")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a folder")
    return path
