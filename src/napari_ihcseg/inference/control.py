"""Progress callbacks and cancellation, with no GUI toolkit involved.

A long computation takes ``progress(done, total)``, a plain callable, and
``cancel``, either a :class:`threading.Event` or a callable returning ``True``
when the user asked to stop. The computation checks ``cancel`` before each
batch of tiles and raises :class:`Cancelled`, so it stops within one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Union

#: ``progress(done, total)``; called with increasing ``done`` up to ``total``.
ProgressCallback = Callable[[int, int], None]
#: A :class:`threading.Event` or a callable returning ``True`` to stop.
CancelCheck = Union[threading.Event, Callable[[], bool]]


class Cancelled(Exception):
    """Raised when the user cancels a running computation."""


def is_cancelled(cancel: CancelCheck | None) -> bool:
    """Whether ``cancel`` (an Event, a callable or None) asks to stop."""
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    if callable(cancel):
        return bool(cancel())
    raise TypeError(f"cancel must be a threading.Event or a callable returning bool, got {type(cancel).__name__}")


def check_cancel(cancel: CancelCheck | None, what: str = "inference") -> None:
    """Raise :class:`Cancelled` when ``cancel`` is set."""
    if is_cancelled(cancel):
        raise Cancelled(f"{what} was cancelled")


def validate_callbacks(progress: ProgressCallback | None, cancel: CancelCheck | None) -> None:
    """Fail early, with a clear message, on callbacks of the wrong type."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(done, total), got {type(progress).__name__}")
    if cancel is not None and not (isinstance(cancel, threading.Event) or callable(cancel)):
        raise TypeError(f"cancel must be a threading.Event or a callable returning bool, got {type(cancel).__name__}")


class OffsetProgress:
    """Forward a sub-task's ``(done, total)`` as part of a larger task.

    Parameters
    ----------
    progress : callable or None
        The outer callback.
    offset : int
        Units already done before this sub-task.
    total : int
        Units of the whole task.
    span : int, optional
        Units this sub-task stands for; reports never go beyond
        ``offset + span``, so the next sub-task starts where this one ends.
    """

    def __init__(self, progress: ProgressCallback | None, offset: int, total: int, *, span: int | None = None) -> None:
        self.progress = progress
        self.offset = int(offset)
        self.total = int(total)
        self.end = self.total if span is None else min(self.offset + int(span), self.total)

    def __call__(self, done: int, total: int) -> None:  # noqa: ARG002 - the sub-total is implied
        if self.progress is not None:
            self.progress(min(self.offset + int(done), self.end), self.total)
