"""Helpers shared by the ``ihcseg`` sub-commands."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
#: Stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """An error reported to the user as one line, without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def print_error(message: str) -> None:
    """Print ``ihcseg: error: <message>`` to standard error."""
    print(f"ihcseg: error: {message}", file=sys.stderr, flush=True)


def parse_thresholds(text: str | None) -> tuple[float, float, float] | None:
    """Parse ``"0.2,0.4,0.6"`` into three increasing DAB OD thresholds."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"--thresholds: expected three numbers like 0.2,0.4,0.6, got {text!r}") from None
    if len(values) != 3 or not (0 <= values[0] < values[1] < values[2]):
        raise CLIError(f"--thresholds: expected three increasing non-negative numbers, got {text!r}")
    return values  # type: ignore[return-value]


def parse_scale(text: str) -> float | str:
    """Parse a ``--scale`` value: ``"auto"``, or a factor from 0.25 to 8 as a float."""
    from napari_ihcseg.inference.autoscale import AUTO, is_auto
    from napari_ihcseg.inference.config import check_scale

    if is_auto(text):
        return AUTO
    try:
        return check_scale(float(text))
    except ValueError:
        raise CLIError(f"--scale: expected 'auto' or a number from 0.25 to 8 (2 for images at half "
                       f"the model's magnification), got {text!r}") from None


def output_dir(path: str | Path) -> Path:
    """Create the output folder (and parents), check that a file can be written there, and return it.

    Run before any expensive work, so that a read-only or full disk, or a
    file where the folder should be, fails at once with one line.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out}: exists and is not a folder; give a folder for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    if not out.is_dir():
        raise CLIError(f"{out}: not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ihcseg-write-test-") as probe:
            probe.write(b"\0")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise CLIError(f"{out}: cannot write into the output folder ({exc.strerror or exc})") from None
    return out


def progress_bar(total: int, desc: str, *, unit: str = "tile") -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` callback drawing a tqdm bar on a terminal.

    Returns ``None`` when standard error is not a terminal, so logs stay clean.
    """
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)

    def update(done: int, total_: int) -> None:
        if bar.total != total_:
            bar.total = total_
        bar.n = done
        bar.refresh()
        if done >= total_:
            bar.close()

    return update


def load_data(specs) -> list:
    """Read data specs (``KIND:PATH`` or a folder), saying which layout each folder follows and what was skipped."""
    from napari_ihcseg.datasets import load_dataset
    from napari_ihcseg.datasets.registry import read_folder_spec, split_spec

    samples = []
    for spec in specs:
        kind, path = split_spec(spec)
        if kind not in ("folder", "pairs"):
            samples.extend(load_dataset(spec))
            continue
        data = read_folder_spec(kind, path)
        print(f"found {data.summary()}")
        for message in data.skipped:
            print(f"skipped: {message}", file=sys.stderr)
        for message in data.warnings:
            print(f"warning: {message}", file=sys.stderr)
        samples.extend(data.samples)
    return samples
