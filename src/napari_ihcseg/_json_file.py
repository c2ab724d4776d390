"""Reading a JSON file with a clear error.

Every JSON file the project reads (a scoring summary, a GeoJSON region or
export, a training-pair ``dataset.json``, point annotations, a training
state) goes through :func:`read_json`, so that a bad file always gives the
same kind of one-line message, ``"<path>: <problem>"``: the file is missing,
is a folder, is not UTF-8 text, is not JSON (with the line and column of the
first error), or holds the wrong kind of value at the top level.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["parse_json", "read_json"]

#: How a JSON value's Python type is named in a message.
_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "true or false",
               int: "a number", float: "a number", type(None): "null"}


def _json_name(types) -> str:
    names = dict.fromkeys(_JSON_NAMES.get(t, t.__name__) for t in types)
    return " or ".join(names)


def parse_json(text: str | bytes, path: str | os.PathLike, *, what: str = "JSON",
               expect: type | tuple[type, ...] | None = dict):
    """Parse ``text`` read from ``path``; errors name the file.

    Parameters
    ----------
    text : str or bytes
        The file's content; bytes are decoded as UTF-8 (a byte-order mark is
        allowed).
    path : path-like
        The file the text came from, named in every error.
    what : str
        What the file should be, in the message (``"JSON"``, ``"GeoJSON"``).
    expect : type or tuple of types, optional
        The type the top-level value must have (``dict`` for a JSON object,
        ``list``, ...); ``None`` accepts any.

    Returns
    -------
    object
        The parsed value.

    Raises
    ------
    ValueError
        ``"<path>: not valid <what> (line L, column C: <reason>)"``, or
        ``"<path>: expected <kind> at the top level, got <kind>"``.

    Examples
    --------
    >>> parse_json('{"a": 1}', "x.json")
    {'a': 1}
    >>> parse_json('{"a": 1\\n"b": 2}', "x.json")
    Traceback (most recent call last):
    ValueError: x.json: not valid JSON (line 2, column 1: Expecting ',' delimiter)
    >>> parse_json('[1, 2]', "x.json")
    Traceback (most recent call last):
    ValueError: x.json: expected a JSON object at the top level, got a list
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not valid {what} (not UTF-8 text: byte {exc.start} is "
                             f"0x{exc.object[exc.start]:02x})") from None
    elif text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid {what} (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if expect is not None:
        types = expect if isinstance(expect, tuple) else (expect,)
        # true and false are ints to Python, not numbers to JSON
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            kind = "a JSON object" if types == (dict,) else _json_name(types)
            raise ValueError(f"{path}: expected {kind} at the top level, got {_json_name((type(value),))}")
    return value


def read_json(path: str | os.PathLike, *, what: str = "JSON", expect: type | tuple[type, ...] | None = dict):
    """Read a JSON file; every problem is one line naming the file.

    Parameters
    ----------
    path : path-like
        The file (``~`` is expanded).
    what, expect
        As in :func:`parse_json`: what the file should be, and the type of
        its top-level value (``dict`` by default; ``None`` for any).

    Returns
    -------
    object
        The parsed value.

    Raises
    ------
    FileNotFoundError
        ``"<path>: no such file"``.
    ValueError
        If the path is a folder, the file is not UTF-8, not JSON (the
        message gives the line and column), or its top-level value is not
        of the ``expect`` type.
    OSError
        If the file cannot be read (e.g. no permission); the message names it.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "settings.json")
    >>> read_json(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: ...settings.json: no such file
    >>> with open(path, "w") as fh:
    ...     _ = fh.write('{"tile": 256}')
    >>> read_json(path)
    {'tile': 256}
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a {what} file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise type(exc)(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return parse_json(raw, path, what=what, expect=expect)
