"""The error every reader raises, and the checks that come before any decoding.

:func:`sniff_format` checks that a path names a readable, non-empty file and tells
its format from the first bytes; :func:`describe_error` and
:func:`tifffile_quiet` turn the decoding libraries' exceptions and logged
complaints into the one-line reason of an :class:`ImageReadError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["ImageReadError", "ImageWarning"]

_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)
_SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                  ".svs": "TIFF", ".btf": "TIFF"}


class ImageWarning(UserWarning):
    """A file was read, but what it gave may not be what it was meant to hold.

    For example every pixel has the same colour (a fully transparent or blank
    image), or the file holds several images and another one than the first
    was read. The message names the file. The CLI, the batch report and
    napari's notifications show it.
    """


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message is one line.

    Parameters
    ----------
    path : path-like
        The file.
    reason : str
        What is wrong, for a person (newlines are folded).

    Attributes
    ----------
    path : str
    reason : str
    """

    def __init__(self, path, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):
        # Rebuilt from (path, reason), so the error survives pickling, e.g. from a Dask worker.
        return type(self), (self.path, self.reason)


def describe_error(exc: BaseException) -> str:
    """An exception as one line: its type, then its message with whitespace runs folded.

    Parameters
    ----------
    exc : BaseException
        What a decoding library (or anything else) raised.

    Returns
    -------
    str

    Examples
    --------
    >>> describe_error(ValueError("bad\\n  offset")), describe_error(EOFError())
    ('ValueError: bad offset', 'EOFError')
    """
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def as_read_error(path, what: str, *, cleanup: Callable[[], object] | None = None) -> Iterator[None]:
    """Turn any failure inside into one :class:`ImageReadError` ``cannot read the {what} (...)``.

    Parameters
    ----------
    path : path-like
        The file the error names.
    what : str
        What was being read, e.g. ``"TIFF file"``.
    cleanup : callable, optional
        Run first on any error (e.g. closing the file), including an
        :class:`ImageReadError`, which passes through unchanged.

    Examples
    --------
    >>> try:
    ...     with as_read_error("a.tif", "TIFF file"):
    ...         raise KeyError("tile 7")
    ... except ImageReadError as exc:
    ...     print(exc)
    a.tif: cannot read the TIFF file (KeyError: 'tile 7')
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
        if cleanup is not None:
            cleanup()
        if isinstance(exc, ImageReadError):
            raise
        raise ImageReadError(path, f"cannot read the {what} ({describe_error(exc)})") from None


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def tifffile_quiet() -> Iterator[_Collect]:
    """Collect tifffile's logged warnings instead of letting Python print them.

    tifffile reports damaged files (bad offsets, short reads) through the
    ``tifffile`` logger; without a handler Python prints them to standard
    error, which would add lines to the one-line error the user gets. A
    handler configured by the application still receives them.

    Yields
    ------
    handler : logging.Handler
        Its ``messages`` list holds the warnings logged inside, e.g. to give
        the reason of a failure.
    """
    handler = _Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def sniff_format(path) -> tuple[Path, str]:
    """Check that ``path`` is a readable, non-empty file and tell its format from its first bytes.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    path : Path
    kind : {"TIFF", "PNG", "JPEG"}

    Raises
    ------
    ImageReadError
        For a missing, unreadable, empty or unsupported file, or one whose
        first bytes contradict its extension.
    TypeError
        When ``path`` is not a path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path, got {type(path).__name__}")
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot access the file ({exc.strerror or describe_error(exc)})") from None
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if st.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ImageReadError(path, f"cannot read the file ({exc.strerror or describe_error(exc)})") from None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return path, kind
    expected = _SUFFIX_FORMAT.get(path.suffix.lower())
    if expected is not None:
        raise ImageReadError(path, f"not a valid {expected} file (its first bytes are not a {expected} "
                                   "signature; the file is corrupt or mislabelled)")
    suffix = path.suffix or "(no extension)"
    raise ImageReadError(path, f"unsupported file type {suffix}; "
                               "supported: PNG, JPEG, TIFF (incl. BigTIFF, OME-TIFF, tiled pyramids, SVS)")

