"""The correction session of one Labels layer: what changed, who changed it, and the autosave.

A :class:`CorrectionSession` watches a Labels layer. Every edit, whether made
with napari's own tools (paint, fill, erase, undo) or with the correction
helpers, is found by comparing the labels with a copy (:class:`LabelDiffer`),
logged in an :class:`EditTracker`, and, a couple of seconds later, autosaved to
a recovery file (:class:`RecoveryStore`) in a background thread. The Correct,
Save-pairs and Score widgets share the session of a layer through
:func:`session_for`; the panels that make, edit, score or save a layer's
nuclei (Segment, Correct, Count, Score, Save pairs) are
:class:`CorrectionPanel` s, which offer to restore unsaved corrections. A
session never replaces a recovery file that was not offered to the user.
"""

from __future__ import annotations

import functools
import weakref

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QWidget

from napari_ihcseg.editing.recovery import RecoveryInfo, RecoveryStore, recovery_key
from napari_ihcseg.editing import EditTracker, LabelChange, LabelDiffer, LabelEdit

from ._common import Ask, Debouncer, ask_with_dialog, layer_source, start_worker, unwrap
from ._layer_pixels import layer_origin

#: Delay after the last edit before the change is looked at (ms).
SYNC_DELAY_MS = 200
#: Delay after the last edit before the recovery file is written (ms).
AUTOSAVE_DELAY_MS = 2000

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layer_key_source(layer) -> str:
    """What identifies the image a labels layer belongs to (for the recovery key).

    The image's file, or for an image not read from a file its layer name
    and a digest of its pixels (two such images of one name and size keep
    their corrections apart).
    """
    meta = layer.metadata.get("ihcseg", {}) if isinstance(layer.metadata, dict) else {}
    source = meta.get("source") or layer_source(layer) or f"layer:{layer.name}"
    return f"{source}#{meta['image_digest']}" if meta.get("image_digest") else source


def layer_recovery_key(layer) -> str:
    """The recovery key of a labels layer: its image, shape and place in the slide."""
    return recovery_key(layer_key_source(layer), np.shape(layer.data), layer_origin(layer))


class CorrectionSession(QObject):
    """Tracks and autosaves the corrections made to one Labels layer.

    Parameters
    ----------
    layer : napari.layers.Labels
    store : RecoveryStore, optional
        Where unsaved corrections go; the per-user cache folder by default.
    autosave_ms : int
        Delay between the last edit and the autosave; 0 disables autosaving.
    """

    #: Emitted with a :class:`LabelChange` after each detected edit.
    changed = Signal(object)
    #: Emitted with the recovery file path after each autosave.
    autosaved = Signal(str)

    def __init__(self, layer, *, store: RecoveryStore | None = None, autosave_ms: int = AUTOSAVE_DELAY_MS) -> None:
        super().__init__()
        layer = unwrap(layer)
        self._layer = weakref.ref(layer)
        self.store = store if store is not None else RecoveryStore()
        self.source = layer_key_source(layer)
        self.key = layer_recovery_key(layer)
        self.tracker = EditTracker()
        self.differ = LabelDiffer(np.asarray(layer.data))
        self.edited_mask = np.zeros(np.shape(layer.data), bool)
        self.recovery_offered = False
        #: Keys whose recovery file this session may replace: written by it, or offered, restored or discarded.
        self._may_replace: set[str] = set()
        self._warned: set[str] = set()
        #: Where the last edit changed pixels: a box, ``()`` for none (a class set by hand), ``None`` if unknown.
        self.last_edit_box: tuple | None = None
        #: Whether the last edit was one discrete action (a helper key, a count-mode click), not a brush stroke.
        self.last_edit_discrete = False
        #: Count mode's counted points, ``() -> (coords, classes) or None``, autosaved beside the labels.
        self.counted_points = None
        #: The counted points of the last restored recovery file, for count mode to show again (or ``None``).
        self.restored_points: tuple[np.ndarray, list[str]] | None = None
        self._region: tuple[slice, slice] | None = None
        self._full = False
        self._applying = False
        self._saving = False
        self._dirty = False
        self._sync = Debouncer(self.sync, SYNC_DELAY_MS)
        self._autosave = Debouncer(self.autosave, autosave_ms) if autosave_ms > 0 else None
        layer.events.paint.connect(self._on_paint)
        layer.events.set_data.connect(self._on_set_data)
        layer.events.data.connect(self._on_data)

    @property
    def layer(self):
        return self._layer()

    # ---------------------------------------------------------------- edits
    def _grow(self, box: tuple[slice, slice]) -> None:
        if self._region is None:
            self._region = box
        else:
            self._region = tuple(slice(min(a.start, b.start), max(a.stop, b.stop))
                                 for a, b in zip(self._region, box))

    def _on_paint(self, event) -> None:
        if self._applying:
            return
        for atom in getattr(event, "value", None) or []:
            box = None
            if hasattr(atom, "slice_key"):
                box = tuple(atom.slice_key)[-2:]
            else:
                idx = atom[0]
                if len(idx) >= 2 and np.size(idx[-1]):
                    box = tuple(slice(int(np.min(i)), int(np.max(i)) + 1) for i in idx[-2:])
            if box is None:
                self._full = True
            else:
                self._grow(box)
        self._sync.trigger()

    def _on_set_data(self, _event=None) -> None:
        if self._applying:
            return
        self._full = True
        self._sync.trigger()

    def _on_data(self, _event=None) -> None:
        layer = self.layer
        if layer is None or self._applying:
            return
        if np.shape(layer.data) != self.differ.shape:  # a different image: start over
            if np.ndim(layer.data) != 2:
                from ._common import show_error

                show_error(f"{layer.name} now holds a {np.ndim(layer.data)}-D array {np.shape(layer.data)}, "
                           "not one 2-D image of nuclei: its edits are not tracked or autosaved")
                return
            self.differ.reset(np.asarray(layer.data))
            self.edited_mask = np.zeros(np.shape(layer.data), bool)
            self.key = layer_recovery_key(layer)
            self.recovery_offered = False  # the new image's recovery, if any, is offered anew
            self.restored_points = None  # counted on the image before
            return
        self._on_set_data()

    def sync(self) -> LabelChange:
        """Look for edits now (normally run shortly after each edit)."""
        self._sync.cancel()
        layer = self.layer
        if layer is None or np.shape(layer.data) != self.differ.shape:  # gone, or no longer 2-D nuclei
            return LabelChange(frozenset(), frozenset(), frozenset())
        region = None if self._full else self._region
        self._region, self._full = None, False
        change = self.differ.update(np.asarray(layer.data), region=region)
        self.last_edit_box = None if region is None else tuple(region)
        self.last_edit_discrete = False
        if change.touched:
            self.edited_mask[self.differ.last_region] |= self.differ.last_diff
            self.tracker.record_change("edit", change)
            self._edited(change)
        return change

    def apply(self, edit: LabelEdit) -> LabelChange:
        """Apply a helper's edit to the layer, undoably, and log it under its own name."""
        layer = self.layer
        if self._sync.pending:
            self.sync()
        if edit.n_pixels:
            self._applying = True
            try:
                layer.data_setitem(edit.indices, edit.values)
            finally:
                self._applying = False
            rr, cc = edit.indices
            box = (slice(int(rr.min()), int(rr.max()) + 1), slice(int(cc.min()), int(cc.max()) + 1))
            self.differ.update(np.asarray(layer.data), region=box)
            self.edited_mask[rr, cc] = True
        self.last_edit_box = box if edit.n_pixels else ()
        self.last_edit_discrete = True
        self.tracker.record_change(edit.action, edit.change)
        self._edited(edit.change)
        return edit.change

    def set_class(self, label: int, value: str | None) -> LabelChange:
        """Give nucleus ``label`` a class by hand (``None``: back to the model's), and log it."""
        if self._sync.pending:
            self.sync()
        self.tracker.set_class(label, value)
        self.last_edit_box = ()
        self.last_edit_discrete = True
        change = LabelChange(frozenset(), frozenset({int(label)}), frozenset())
        self._edited(change)
        return change

    def _edited(self, change: LabelChange) -> None:
        self.changed.emit(change)
        if self._autosave is not None:
            self._autosave.trigger()

    # ------------------------------------------------------------- recovery
    def autosave(self) -> None:
        """Write the recovery file in a background thread."""
        layer = self.layer
        if layer is None or not self.tracker.n_edits:
            return
        if self._saving:
            self._dirty = True
            return
        if not self._may_write() or self._drop_if_all_undone():
            return
        self._saving, self._dirty = True, False
        labels = np.array(layer.data, copy=True)
        tracker = EditTracker.from_dict(self.tracker.to_dict())
        self._may_replace.add(self.key)
        start_worker(functools.partial(self.store.save, source=self.source, points=self._points()),
                     self.key, labels, tracker,
                     on_result=lambda path: self.autosaved.emit(str(path)),
                     on_error=self._autosave_failed, on_finished=self._autosave_done)

    def _may_write(self) -> bool:
        """Whether the recovery file of :attr:`key` may be written or deleted now.

        Not while it holds unsaved corrections of an earlier session that were
        never offered to the user (:func:`offer_restore`): the user is told
        once, and the file is kept.
        """
        if self.key in self._may_replace or self.store.pending(self.key) is None:
            return True
        if self.key not in self._warned:
            self._warned.add(self.key)
            from ._common import show_error

            show_error(f"Unsaved corrections of {self.source} from an earlier session are in "
                       f"{self.store.path_for(self.key)}; open the Correct panel on these nuclei to restore or "
                       "discard them. Until then, the edits made now are not autosaved.")
        return False

    def _autosave_failed(self, exc: BaseException) -> None:
        from ._common import describe_error, show_error

        show_error(f"Could not autosave the corrections to {self.store.folder}: {describe_error(exc)}")

    def _autosave_done(self) -> None:
        self._saving = False
        if self._dirty and self._autosave is not None:
            self._autosave.trigger()

    def autosave_now(self):
        """Write the recovery file now, in this thread; returns its path (or ``None``)."""
        layer = self.layer
        if layer is None or not self.tracker.n_edits or not self._may_write() or self._drop_if_all_undone():
            return None
        self._may_replace.add(self.key)
        path = self.store.save(self.key, np.asarray(layer.data), self.tracker, source=self.source,
                               points=self._points())
        self.autosaved.emit(str(path))
        return path

    def _points(self):
        """A copy of count mode's counted points, taken in the GUI thread: the counts layer's, else those
        restored and not yet shown by count mode (``None`` without either)."""
        points = self.counted_points() if self.counted_points is not None else self.restored_points
        return None if points is None else (np.array(points[0], float), list(points[1]))

    def _drop_if_all_undone(self) -> bool:
        """With every edit undone (the labels and classes as they came), drop the recovery file and say so."""
        if self._sync.pending:
            self.sync()
        if not self.differ.matches_original() or self.tracker.class_overrides:
            return False
        points = self._points()
        if points is not None and len(points[0]):  # counted by hand (with the model's class, say): kept
            return False
        self.store.clear(self.key)
        return True

    @property
    def saving(self) -> bool:
        return self._saving or (self._autosave is not None and self._autosave.pending)

    def pending_recovery(self) -> RecoveryInfo | None:
        """Unsaved corrections of this image from an earlier session, if any."""
        info = self.store.pending(self.key)
        if info is None or info.shape != tuple(np.shape(self.layer.data)):
            return None
        return info

    def restore(self) -> RecoveryInfo:
        """Replace the layer's labels and edit log by the recovered ones."""
        labels, tracker, info = self.store.restore(self.key)
        self._may_replace.add(self.key)
        layer = self.layer
        if labels.shape != tuple(np.shape(layer.data)):
            raise ValueError(f"{info.path}: recovered labels are {labels.shape}, the layer is {np.shape(layer.data)}")
        self.edited_mask = labels != np.asarray(layer.data)
        self._applying = True
        try:
            layer.data = labels.astype(np.asarray(layer.data).dtype, copy=False)
        finally:
            self._applying = False
        self.differ.update(labels)  # still measured from the labels the layer came with
        self.last_edit_box = None
        self.tracker = tracker
        self.restored_points = self.store.points(self.key)
        self.changed.emit(LabelChange(frozenset(), frozenset(int(i) for i in np.unique(labels) if i), frozenset()))
        return info

    def discard_recovery(self) -> bool:
        """Delete the recovery file of this image (the user chose not to restore it)."""
        self._may_replace.add(self.key)
        return self.store.clear(self.key)

    def saved(self) -> None:
        """The corrections are safe in a dataset: drop the recovery file (not one never offered)."""
        if self._autosave is not None:
            self._autosave.cancel()
        if self._may_write():
            self.store.clear(self.key)


def session_for(layer, *, store: RecoveryStore | None = None, autosave_ms: int = AUTOSAVE_DELAY_MS,
                create: bool = True) -> CorrectionSession | None:
    """The session of ``layer``, created on first use."""
    layer = unwrap(layer)
    session = _SESSIONS.get(layer)
    if session is None and create:
        session = CorrectionSession(layer, store=store, autosave_ms=autosave_ms)
        _SESSIONS[layer] = session
    return session


def offer_restore(session: CorrectionSession, ask) -> bool:
    """Ask once per session whether to restore unsaved corrections; restore if yes."""
    if session.recovery_offered:
        return False
    session.recovery_offered = True
    info = session.pending_recovery()
    if info is None:
        return False
    counted = f", {info.n_points} counted point(s)" if info.n_points else ""
    question = (f"Unsaved corrections of {session.source} ({info.n_edits} edit(s){counted}, autosaved "
                f"{info.saved_at}) were found in {info.path.parent}.\n\nRestore them? If not, the next "
                "autosave replaces them.")
    restore = ask("Restore corrections", question)
    session._may_replace.add(session.key)  # offered: the user's answer decides
    if restore:
        session.restore()
        return True
    return False


class CorrectionPanel(QWidget):
    """A panel working on nuclei layers whose corrections are tracked: it offers to restore a layer's
    unsaved corrections (asking with ``ask``) and has them autosaved in ``store``.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    ask : callable, optional
        ``ask(title, question) -> bool`` (default: a Yes/No dialog), used to
        offer restoring unsaved corrections.
    store : RecoveryStore, optional
        Where corrections are autosaved (default: the per-user cache folder).
    """

    def __init__(self, napari_viewer, *, ask: Ask | None = None, store: RecoveryStore | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.ask = ask or ask_with_dialog(self)
        self.store = store

    def session_of(self, layer) -> CorrectionSession:
        """The correction session of the nuclei ``layer``, autosaving to :attr:`store` if made here."""
        return session_for(layer, store=self.store)

    def offer_restore_for(self, layer) -> bool:
        """Offer once to restore the unsaved corrections of ``layer`` (see :func:`offer_restore`)."""
        return offer_restore(self.session_of(layer), self.ask)
