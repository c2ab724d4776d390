"""Tracking label edits: what changed in a label image, and the record of who changed it.

:class:`LabelDiffer` finds what changed between two states of a label image
(for edits made with the paint, fill and erase tools, and for undo), and
:class:`EditTracker` keeps the record (a log of :class:`EditRecord`) of which
nuclei a human created, changed or deleted, and when, so that exports and
training pairs can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .operations import DENSE_ID_LIMIT, LabelChange, check_labels, count_ids

#: Side of the blocks of original labels :class:`LabelDiffer` keeps where edits reach (pixels).
ORIGINAL_BLOCK = 256
#: Classes a person can give a nucleus by hand: positive / negative, or an intensity class 0 / 1+ / 2+ / 3+.
CLASS_VALUES = ("positive", "negative", "0", "1", "2", "3")
#: Name of the edit that sets a class (``"class=positive"``); ``"class=model"`` gives it back to the model.
CLASS_ACTION = "class="
MODEL_CLASS = "model"


class LabelDiffer:
    """Find which nuclei changed since the last look at a label image.

    Keeps a copy of the labels and their pixel counts; :meth:`update` compares
    the current array (or one region of it) with the copy and reports each id
    as created (absent before), deleted (absent now) or changed. It catches
    every kind of edit, including napari's paint, fill, erase and undo.

    Pixel counts are kept in an array indexed by id (:attr:`areas`) for ids
    below :data:`~napari_ihcseg.editing.operations.DENSE_ID_LIMIT` or the
    number of pixels, whichever is larger, and in a dict above: labels with
    ids in the billions cost memory by their nuclei, not by their largest id.

    Parameters
    ----------
    labels : (H, W) ndarray of int

    Examples
    --------
    >>> lab = np.zeros((4, 4), np.uint32); lab[0, :2] = 3_000_000_000
    >>> differ = LabelDiffer(lab)
    >>> lab[3, 3] = 7; lab[0, 0] = 0
    >>> differ.update(lab), differ.area(3_000_000_000), differ.max_label
    (LabelChange(created=frozenset({7}), changed=frozenset({3000000000}), deleted=frozenset()), 1, 3000000000)
    """

    def __init__(self, labels: np.ndarray) -> None:
        self.reset(labels)

    def reset(self, labels: np.ndarray) -> None:
        """Start over from ``labels`` (copied)."""
        labels = check_labels(labels)
        self._snapshot = np.array(labels, copy=True)
        #: The labels as they were, block by block, in the blocks an update has changed.
        self._original: dict[tuple[int, int], np.ndarray] = {}
        self.last_region: tuple[slice, ...] = (slice(None), slice(None))
        self.last_diff = np.zeros(labels.shape, bool)
        self._limit = max(DENSE_ID_LIMIT, labels.size)
        self._areas, self._sparse = count_ids(labels, self._limit)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._snapshot.shape

    @property
    def areas(self) -> np.ndarray:
        """Pixel count of each id at the last update (index = id; a view, do not modify).

        Ids past its end may still have pixels when they are very large (see
        the class notes): ask :meth:`area`, :meth:`sizes` or :attr:`max_label`.
        """
        return self._areas

    def area(self, label: int) -> int:
        """Pixel count of ``label`` at the last update."""
        label = int(label)
        if 0 <= label < self._areas.size:
            return int(self._areas[label])
        return self._sparse.get(label, 0)

    def sizes(self) -> np.ndarray:
        """The pixel count of every nucleus (id above 0) at the last update, in no set order."""
        dense = self._areas[1:]
        return np.concatenate([dense[dense > 0], np.fromiter(self._sparse.values(), np.int64, len(self._sparse))])

    @property
    def max_label(self) -> int:
        """The largest id with pixels at the last update (0 for none)."""
        if self._sparse:
            return max(self._sparse)
        present = np.flatnonzero(self._areas[1:])
        return int(present[-1]) + 1 if present.size else 0

    def _areas_of(self, ids: np.ndarray) -> np.ndarray:
        """Pixel counts of ``ids`` (sorted, none negative)."""
        dense = ids < self._areas.size
        out = np.zeros(ids.size, np.int64)
        out[dense] = self._areas[ids[dense].astype(np.intp)]
        out[~dense] = [self._sparse.get(i, 0) for i in ids[~dense].tolist()]
        return out

    def _count(self, values: np.ndarray, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) the pixels ``values`` from the counts."""
        dense, sparse = count_ids(values, self._limit)
        if dense.size > self._areas.size:
            self._areas = np.pad(self._areas, (0, dense.size - self._areas.size))
        self._areas[:dense.size] += sign * dense
        for i, n in sparse.items():
            n = self._sparse.get(i, 0) + sign * n
            if n:
                self._sparse[i] = n
            else:
                self._sparse.pop(i, None)

    def update(self, labels: np.ndarray, *, region: tuple[slice, ...] | None = None) -> LabelChange:
        """Compare ``labels`` with the copy, take it as the new copy, and report the change.

        Parameters
        ----------
        labels : (H, W) ndarray of int
            The current labels, same shape as before.
        region : tuple of slice, optional
            Only this part can have changed (a speed-up); by default the whole image.

        Notes
        -----
        The changed pixels are left in ``last_diff``, a boolean array over
        ``labels[last_region]``.
        """
        labels = check_labels(labels)
        if labels.shape != self._snapshot.shape:
            raise ValueError(f"labels changed shape from {self._snapshot.shape} to {labels.shape}; call reset()")
        region = tuple(region) if region is not None else (slice(None), slice(None))
        old, new = self._snapshot[region], labels[region]
        diff = old != new
        self.last_region, self.last_diff = region, diff
        if not diff.any():
            return LabelChange(frozenset(), frozenset(), frozenset())
        was, now = old[diff], new[diff].astype(old.dtype, copy=False)
        ids = np.unique(np.concatenate([was, now]))
        ids = ids[ids > 0]
        before = self._areas_of(ids)
        self._count(was, -1)
        self._count(now, 1)
        after = self._areas_of(ids)
        self._keep_original(region, diff)
        old[diff] = now
        ids = ids.tolist()
        created = frozenset(i for i, b, a in zip(ids, before, after) if b == 0 and a > 0)
        deleted = frozenset(i for i, a in zip(ids, after) if a == 0)
        changed = frozenset(ids) - created - deleted
        return LabelChange(created, changed, deleted)

    def _keep_original(self, region: tuple[slice, ...], diff: np.ndarray) -> None:
        """Copy the blocks ``diff`` reaches into the first time they change."""
        rows, cols = np.nonzero(diff.any(axis=1))[0], np.nonzero(diff.any(axis=0))[0]
        top, left = (r.indices(n)[0] for r, n in zip(region, self._snapshot.shape))
        b = ORIGINAL_BLOCK
        for i in range((top + rows[0]) // b, (top + rows[-1]) // b + 1):
            for j in range((left + cols[0]) // b, (left + cols[-1]) // b + 1):
                if (i, j) not in self._original:
                    self._original[i, j] = self._snapshot[i * b:(i + 1) * b, j * b:(j + 1) * b].copy()

    def matches_original(self) -> bool:
        """Whether the labels of the last update are those given to :meth:`reset` (every edit undone).

        Only the blocks an edit has reached are kept and compared, so this
        costs memory and time in proportion to the edited area.
        """
        b = ORIGINAL_BLOCK
        return all(np.array_equal(self._snapshot[i * b:(i + 1) * b, j * b:(j + 1) * b], block)
                   for (i, j), block in self._original.items())


@dataclass(frozen=True)
class EditRecord:
    """One entry of the edit log: when, what, and which ids."""

    time: str
    action: str
    created: tuple[int, ...] = ()
    changed: tuple[int, ...] = ()
    deleted: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"time": self.time, "action": self.action, "created": list(self.created),
                "changed": list(self.changed), "deleted": list(self.deleted)}


def utc_timestamp() -> str:
    """The current time in UTC, ISO 8601 to the second (how edits and recovery files are stamped)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class EditTracker:
    """Which nuclei a human created, changed or deleted, and when.

    The state of each id follows its history: a nucleus drawn by hand stays
    ``"created"`` when it is later reshaped; one drawn and then deleted again
    is forgotten; a model nucleus reshaped is ``"changed"``, removed is
    ``"deleted"``, and back again (undo) is ``"changed"``.

    Examples
    --------
    >>> t = EditTracker()
    >>> _ = t.record("merge", changed=[3], deleted=[5])
    >>> t.status(3), t.status(5), sorted(t.edited)
    ('changed', 'deleted', [3])
    >>> _ = t.set_class(3, "positive")
    >>> t.class_overrides
    {3: 'positive'}
    """

    def __init__(self) -> None:
        self._log: list[EditRecord] = []
        self._status: dict[int, str] = {}
        self._when: dict[int, str] = {}
        self._classes: dict[int, str] = {}
        #: Hand classes of deleted nuclei, given back if an undo brings the same id back.
        self._parked: dict[int, str] = {}

    def record(self, action: str, *, created=(), changed=(), deleted=(), time: str | None = None) -> EditRecord | None:
        """Add one edit to the log; returns it, or ``None`` when it touched no id."""
        created, changed, deleted = (tuple(sorted({int(i) for i in ids if int(i) > 0}))
                                     for ids in (created, changed, deleted))
        if not (created or changed or deleted):
            return None
        rec = EditRecord(time or utc_timestamp(), str(action), created, changed, deleted)
        self._apply(rec)
        self._log.append(rec)
        return rec

    def record_change(self, action: str, change: LabelChange, *, time: str | None = None) -> EditRecord | None:
        """Add a :class:`LabelChange` (from an edit or from :class:`LabelDiffer`)."""
        return self.record(action, created=change.created, changed=change.changed,
                           deleted=change.deleted, time=time)

    def set_class(self, label: int, value: str | None, *, time: str | None = None) -> EditRecord:
        """Give nucleus ``label`` a class by hand; ``None`` or ``"model"`` gives it back to the model.

        The nucleus counts as changed by hand (it reaches the training pairs
        and the "edited by hand" count).
        """
        value = MODEL_CLASS if value is None else str(value)
        if value != MODEL_CLASS and value not in CLASS_VALUES:
            raise ValueError(f"unknown class {value!r}; choose one of {', '.join(CLASS_VALUES)} or {MODEL_CLASS!r}")
        if int(label) <= 0:
            raise ValueError(f"nucleus id must be positive, got {label}")
        return self.record(f"{CLASS_ACTION}{value}", changed=[label], time=time)

    @property
    def class_overrides(self) -> dict[int, str]:
        """The class set by hand for each nucleus that has one (id → a :data:`CLASS_VALUES` entry)."""
        return dict(sorted(self._classes.items()))

    def _apply(self, rec: EditRecord) -> None:
        if rec.action.startswith(CLASS_ACTION):
            value = rec.action[len(CLASS_ACTION):]
            for i in rec.changed:
                if value == MODEL_CLASS:
                    self._classes.pop(i, None)
                else:
                    self._classes[i] = value
        inherited = self._inherited_classes(rec)
        for i in rec.deleted:
            if i in self._classes:
                self._parked[i] = self._classes.pop(i)
        for i, value in inherited.items():
            self._classes.setdefault(i, value)
        for i in rec.created:
            parked = self._parked.pop(i, None)
            # A deleted nucleus back under its own id from an edit found by diffing (an undo) gets its class back;
            # a nucleus grown or split out under a freed id does not.
            if parked is not None and rec.action == "edit":
                self._classes.setdefault(i, parked)
            # An id the model made, deleted and now back (undo, or redrawn) counts as changed.
            self._status[i] = "changed" if self._status.get(i) == "deleted" else "created"
            self._when[i] = rec.time
        for i in rec.changed:
            if self._status.get(i) != "created":
                self._status[i] = "changed"
            self._when[i] = rec.time
        for i in rec.deleted:
            if self._status.get(i) == "created":
                del self._status[i]
                self._when.pop(i, None)
            else:
                self._status[i] = "deleted"
                self._when[i] = rec.time

    def _inherited_classes(self, rec: EditRecord) -> dict[int, str]:
        """Hand classes that follow the pixels: a split nucleus's parts, or a merge of like-classed nuclei."""
        if rec.action == "split" and len(rec.changed) == 1 and rec.changed[0] in self._classes:
            return {i: self._classes[rec.changed[0]] for i in rec.created}
        if rec.action == "merge" and len(rec.changed) == 1 and rec.changed[0] not in self._classes:
            values = {self._classes[i] for i in rec.deleted if i in self._classes}
            if len(values) == 1:
                return {rec.changed[0]: values.pop()}
        return {}

    def status(self, label: int) -> str | None:
        """``"created"``, ``"changed"``, ``"deleted"`` or ``None`` (untouched)."""
        return self._status.get(int(label))

    @property
    def states(self) -> dict[int, str]:
        """The state of every id a human touched (:meth:`status` for all at once)."""
        return dict(self._status)

    def _with(self, state: str) -> frozenset[int]:
        return frozenset(i for i, s in self._status.items() if s == state)

    @property
    def created(self) -> frozenset[int]:
        return self._with("created")

    @property
    def changed(self) -> frozenset[int]:
        return self._with("changed")

    @property
    def deleted(self) -> frozenset[int]:
        return self._with("deleted")

    @property
    def edited(self) -> frozenset[int]:
        """Ids present in the labels that a human created or changed."""
        return self.created | self.changed

    def edit_times(self) -> dict[int, str]:
        """Time (ISO 8601, UTC) of the last edit of each id created or changed by hand."""
        return {i: self._when[i] for i in sorted(self.edited)}

    @property
    def log(self) -> tuple[EditRecord, ...]:
        return tuple(self._log)

    @property
    def n_edits(self) -> int:
        return len(self._log)

    def to_dict(self) -> dict:
        """A JSON-ready form; :meth:`from_dict` rebuilds the tracker from it."""
        return {"log": [r.to_dict() for r in self._log]}

    @classmethod
    def from_dict(cls, data: dict) -> EditTracker:
        tracker = cls()
        for entry in data.get("log", []):
            tracker.record(entry["action"], created=entry.get("created", ()), changed=entry.get("changed", ()),
                           deleted=entry.get("deleted", ()), time=entry["time"])
        return tracker
