"""Small pieces shared by the widgets: the layers a picker offers, dialogs, errors, workers, the checkpoint
catalog. The image pixels under a layer, and where labels lie on them, are in :mod:`._layer_pixels`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QFileDialog, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPushButton, QWidget

#: ``ask(title, question) -> bool``; widgets take one so tests can answer for the user.
Ask = Callable[[str, str], bool]


def ask_with_dialog(parent: QWidget | None) -> Ask:
    """A question asked with a Yes/No :class:`QMessageBox` (default: No)."""

    def ask(title: str, question: str) -> bool:
        answer = QMessageBox.question(parent, title, question,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    return ask


#: ``choose(title, suggested, file_filter) -> path or None``; widgets take one so tests can answer for the user.
ChoosePath = Callable[[str, str, str], "str | None"]


def choose_with_dialog(parent: QWidget | None, *, mode: str = "save") -> ChoosePath:
    """A path chosen in a file dialog: a file to write (``mode="save"``) or to read (``"open"``);
    the filter ``"folder"`` asks for a folder instead. ``None`` when the user cancels."""
    if mode not in ("save", "open"):
        raise ValueError(f"unknown dialog mode {mode!r}; choose 'save' or 'open'")

    def choose(title: str, suggested: str, file_filter: str) -> str | None:
        if file_filter == "folder":
            return QFileDialog.getExistingDirectory(parent, title, suggested) or None
        dialog = QFileDialog.getSaveFileName if mode == "save" else QFileDialog.getOpenFileName
        return dialog(parent, title, suggested, file_filter)[0] or None

    return choose


def folder_row(placeholder: str, choose: Callable[[], object]) -> tuple[QLineEdit, QHBoxLayout]:
    """A folder typed in a line edit, beside a "Choose…" button that calls ``choose()``.

    Returns the line edit and the row holding both; ``choose`` is typically
    :func:`choose_folder_into` of the line edit.
    """
    line = QLineEdit()
    line.setPlaceholderText(placeholder)
    browse = QPushButton("Choose…")
    browse.clicked.connect(choose)
    row = QHBoxLayout()
    row.addWidget(line, 1)
    row.addWidget(browse)
    return line, row


def choose_folder_into(parent: QWidget | None, title: str, line: QLineEdit) -> bool:
    """Choose a folder in a dialog that opens at the one typed in ``line``, and put it there.

    Returns whether one was chosen (``False`` when the user cancels).
    """
    folder = choose_with_dialog(parent, mode="open")(title, line.text(), "folder")
    if folder:
        line.setText(folder)
    return bool(folder)


def show_error(message: str) -> None:
    from napari.utils.notifications import show_error as _show_error

    _show_error(message)


def show_info(message: str) -> None:
    from napari.utils.notifications import show_info as _show_info

    _show_info(message)


def unwrap(obj):
    """The napari object behind the proxy napari hands to plugin widgets (or ``obj`` itself).

    Each access through the proxy makes a new wrapper, so anything keyed by a
    layer (or held by weak reference) must use the layer itself.
    """
    return getattr(obj, "__wrapped__", obj)


def describe_error(exc: BaseException) -> str:
    """One line naming the cause, e.g. ``"ValueError: tile must be ..."``."""
    text = str(exc).strip() or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def guarded(func, *args, **kwargs) -> tuple[object, BaseException | None]:
    """Run ``func`` and return ``(result, None)`` or ``(None, error)``; never raises.

    Background workers run their job through this, so that the widget reports
    errors (and cancellation) itself rather than napari's generic handler.
    """
    try:
        return func(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - handed to the GUI thread
        return None, exc


def start_worker(func, *args, on_result: Callable, on_error: Callable, on_finished: Callable | None = None):
    """Run ``func(*args)`` in a napari thread worker; call back in the GUI thread."""
    from napari.qt.threading import create_worker

    def returned(outcome) -> None:
        result, error = outcome
        if error is None:
            on_result(result)
        else:
            on_error(error)

    worker = create_worker(guarded, func, *args, _start_thread=False,
                           _connect={"returned": returned, "errored": on_error})
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


class Relay(QObject):
    """A progress callback that a worker thread calls and the GUI thread answers.

    ``relay(*args)`` may be called from any thread; ``slot(*args)`` then runs
    in the thread that made the relay (the GUI thread), through a queued
    signal. Hand the relay to the core as its ``progress`` callback.

    Parameters
    ----------
    slot : callable
        Called with the arguments of each call, e.g. ``(done, total)`` or a
        training progress event.
    """

    _called = Signal(object)

    def __init__(self, slot: Callable, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._slot = slot
        self._called.connect(self._deliver)

    def __call__(self, *args) -> None:
        self._called.emit(args)

    def _deliver(self, args: tuple) -> None:
        self._slot(*args)


#: Metadata key of the layers the plugin draws only to show a result (a heat map, a
#: hot-spot circle): no layer picker offers them as input.
DISPLAY_ONLY = "ihcseg_display_only"


def matching_layers(viewer, kinds: tuple[str, ...], accept: Callable | None = None) -> list:
    """The viewer's layers a picker offers: of the class names ``kinds``, not :data:`DISPLAY_ONLY`,
    and accepted by ``accept(layer)`` when given; bottom to top."""
    return [layer for layer in viewer.layers
            if type(layer).__name__ in kinds and not layer.metadata.get(DISPLAY_ONLY)
            and (accept is None or accept(layer))]


class Debouncer:
    """Call ``func`` once, ``delay_ms`` after the last :meth:`trigger`."""

    def __init__(self, func: Callable[[], None], delay_ms: int) -> None:
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(delay_ms))
        self._timer.timeout.connect(func)

    def trigger(self) -> None:
        self._timer.start()

    @property
    def pending(self) -> bool:
        return self._timer.isActive()

    def cancel(self) -> None:
        self._timer.stop()


def check_absolute_folder(text, *, what: str = "folder") -> Path:
    """A folder path typed or chosen by the user: absolute (``~`` expanded), never relative."""
    text = str(text or "").strip()
    if not text:
        raise ValueError(f"choose a {what}")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{text}: the {what} must be an absolute path, not relative to the working folder")
    return path


def in_memory(layer) -> bool:
    """Nuclei a panel can edit and score: 2-D labels held in memory as a numpy array (not a lazy whole
    slide, not a stack)."""
    data = unwrap(layer).data
    return not getattr(layer, "multiscale", False) and isinstance(data, np.ndarray) and data.ndim == 2


def layer_source(layer) -> str | None:
    """The file a layer was opened from, if napari knows it."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return str(path) if path else None


# ------------------------------------------------------------ known checkpoints

def default_catalog_path() -> Path:
    """Where the checkpoints a user loaded or trained are remembered."""
    try:
        from platformdirs import user_config_path

        return user_config_path("napari-ihcseg", appauthor=False) / "checkpoints.json"
    except ImportError:
        return Path.home() / ".config" / "napari-ihcseg" / "checkpoints.json"


def known_checkpoints(path: Path | None = None) -> list[str]:
    """Checkpoint folders remembered in ``path`` that still exist, newest first."""
    path = default_catalog_path() if path is None else Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("checkpoints", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [e for e in entries if isinstance(e, str) and Path(e).is_dir()]


def remember_checkpoint(folder, path: Path | None = None, *, keep: int = 20) -> None:
    """Add a checkpoint folder to the list the Segment widget offers.

    Every widget listening to :func:`catalog_events` hears of it at once.
    """
    from napari_ihcseg._atomic import write_json_atomic

    path = default_catalog_path() if path is None else Path(path)
    folder = str(Path(folder).expanduser().resolve())
    entries = [folder] + [e for e in known_checkpoints(path) if e != folder]
    write_json_atomic(path, {"checkpoints": entries[:keep]})
    catalog_events().changed.emit(catalog_key(path))


def catalog_key(path: Path | None) -> str:
    """The catalog file ``path`` (``None``: the default one) as :attr:`CatalogEvents.changed` names it."""
    return str((default_catalog_path() if path is None else Path(path)).expanduser().absolute())


class CatalogEvents(QObject):
    """Tells the widgets that list checkpoints that a catalog file gained one (e.g. a model just trained)."""

    #: The changed catalog's :func:`catalog_key`.
    changed = Signal(str)


_CATALOG_EVENTS: list[CatalogEvents] = []


def catalog_events() -> CatalogEvents:
    """The process's :class:`CatalogEvents`: catalogs are files, shared by every widget that lists them."""
    if not _CATALOG_EVENTS:
        _CATALOG_EVENTS.append(CatalogEvents())
    return _CATALOG_EVENTS[0]


def key_table(header: str, bindings, on_click: Callable[[str], object]) -> tuple[QGridLayout, dict[str, QPushButton]]:
    """The table of keys a widget lists: one row ``key | button`` per ``(key, text, name)`` binding.

    A button's click calls ``on_click(name)``, as its key does on the layer.
    Returns the grid (rows may be added below) and the buttons by name.
    """
    grid = QGridLayout()
    grid.addWidget(QLabel("<b>Key</b>"), 0, 0)
    grid.addWidget(QLabel(header), 0, 1)
    buttons: dict[str, QPushButton] = {}
    for row, (key, text, name) in enumerate(bindings, start=1):
        grid.addWidget(QLabel(f"<b>{key}</b>"), row, 0)
        button = QPushButton(text[0].upper() + text[1:])
        button.clicked.connect(lambda _=False, n=name: on_click(n))
        grid.addWidget(button, row, 1)
        buttons[name] = button
    return grid, buttons
