"""One writer at a time in a folder: an operating-system lock on a hidden file in it.

Two saves into one training-pair folder (two napari windows, a widget and
a script) each read ``dataset.json``, add their pairs and write it back; the
one that writes last drops the other's pairs from the list. :func:`folder_lock`
makes the second wait until the first has written. The lock is the
operating system's (``flock`` on POSIX, ``msvcrt.locking`` on Windows), so it
is released when its process ends, however it ends: a crash never leaves a
folder locked (only, at worst, the empty lock file, which the next writer
takes). On a file system that cannot lock (some network shares), the
write goes ahead unlocked, as it did before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

#: The lock file, hidden, in the folder it guards while a writer holds it.
LOCK_FILE = ".napari-ihcseg.lock"

#: errno values that mean "another holder has it" rather than "cannot lock here".
_HELD = frozenset({errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK})


def _try_lock(fh) -> bool | None:
    """Take the lock without waiting: True if taken, False if held elsewhere, None if the file system cannot lock."""
    try:
        if os.name == "nt":  # pragma: no cover - Windows
            import msvcrt

            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return False if exc.errno in _HELD else None
    return True


def _unlock(fh) -> None:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, timeout: float = 120.0, what: str = "folder") -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block, waiting up to ``timeout`` seconds for it.

    Parameters
    ----------
    folder : path-like
        The folder to write in; created if needed.
    timeout : float
        How long to wait for another writer to finish.
    what : str
        What the folder is, for the error message.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    TimeoutError
        Naming the folder, when another writer held it for ``timeout`` seconds.

    Examples
    --------
    >>> import tempfile
    >>> with folder_lock(tempfile.mkdtemp()) as lock:
    ...     lock.name
    '.napari-ihcseg.lock'
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    deadline = time.monotonic() + float(timeout)
    while True:
        fh = open(path, "a+b")
        while (taken := _try_lock(fh)) is False:
            if time.monotonic() >= deadline:
                fh.close()
                raise TimeoutError(f"{folder}: another save has been writing to this {what} for over "
                                   f"{timeout:g} s; try again when it has finished")
            time.sleep(0.05)
        if not taken or _still_there(fh, path):
            break
        fh.close()  # the holder before us removed the file it locked: lock the one now there
    try:
        yield path
    finally:
        if taken:
            if os.name != "nt":
                path.unlink(missing_ok=True)  # removed while locked, so a waiting writer locks a new one
            _unlock(fh)
        fh.close()


def _still_there(fh, path: Path) -> bool:
    """Whether ``path`` is still the file ``fh`` holds open."""
    try:
        return os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
    except OSError:
        return False

__all__ = ["LOCK_FILE", "folder_lock"]
