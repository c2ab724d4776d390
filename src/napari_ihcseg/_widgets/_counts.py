"""The counts layer of count mode: a Points layer tied to a nuclei Labels layer.

Each counted nucleus has one point whose ``features["class"]`` is the class
set by hand (``"positive"``, ``"negative"``, ``"0"`` .. ``"3"``, or ``""``
for none yet). The Count widget draws the points; the Save-pairs widget
reads them back to save count targets with the pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_ihcseg import editing

#: Classes that count as positive.
POSITIVE_CLASSES = ("positive", "1", "2", "3")
#: Point colours: positive, negative, no class yet.
POINT_COLORS = {"positive": (0.85, 0.2, 0.15, 1.0), "negative": (0.25, 0.45, 0.95, 1.0), "": (1.0, 0.85, 0.1, 1.0)}
#: Key of ``labels.metadata["ihcseg"]`` naming the counts layer of a nuclei layer.
COUNTS_KEY = "counts_layer"


def point_colour(value: str) -> tuple:
    """The colour of a counted point of class ``value`` (positive, negative or none yet)."""
    return POINT_COLORS["positive" if value in POSITIVE_CLASSES else "negative" if value else ""]


def scored_positive(labels_layer) -> dict | None:
    """Nucleus id → positive, from the Score widget's table on the layer (``None`` if not scored)."""
    features = getattr(labels_layer, "features", None)
    if features is None or "intensity_class" not in features or "index" not in features:
        return None
    return dict(zip(features["index"].astype(int).tolist(), (features["intensity_class"] >= 1).tolist()))


def counts_layer_of(viewer, labels_layer):
    """The counts (Points) layer tied to a nuclei layer in count mode, or ``None``."""
    name = labels_layer.metadata.get("ihcseg", {}).get(COUNTS_KEY) if labels_layer is not None else None
    return viewer.layers[name] if name and name in viewer.layers else None


def counted_points(points_layer, labels_layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points in the nuclei layer's pixels, whether each is positive, and whether its class is known.

    A point's class is its own (``features["class"]``) or, when it has none,
    that of the scored nucleus under it.
    """
    coords = np.asarray(points_layer.data, float).reshape(-1, 2)[:, -2:]
    if labels_layer is not None and (np.any(points_layer.scale[-2:] != labels_layer.scale[-2:])
                                     or np.any(points_layer.translate[-2:] != labels_layer.translate[-2:])):
        coords = np.array([labels_layer.world_to_data(points_layer.data_to_world(p)) for p in coords])
        coords = coords.reshape(-1, 2)[:, -2:]
    features = points_layer.features
    classes = list(features["class"]) if "class" in features else [""] * len(coords)
    positive = np.array([c in POSITIVE_CLASSES for c in classes], bool)
    known = np.array([c != "" for c in classes], bool)
    if not known.all() and labels_layer is not None:
        scored = scored_positive(labels_layer) or {}
        data = np.asarray(labels_layer.data)
        for k in np.flatnonzero(~known):
            label = editing.label_at(data, coords[k])
            if label in scored:
                positive[k], known[k] = scored[label], True
    return coords, positive, known


def remove_points(points, indices) -> None:
    """Remove the points ``indices`` from a Points layer."""
    points.selected_data = {int(i) for i in indices}
    points.remove_selected()


def points_on(label: int, coords: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Indices of the points ``coords`` (row, col) that lie on nucleus ``label`` of ``data``."""
    if not len(coords):
        return np.zeros(0, int)
    rc = np.round(coords).astype(int)
    inside = (rc[:, 0] >= 0) & (rc[:, 0] < data.shape[0]) & (rc[:, 1] >= 0) & (rc[:, 1] < data.shape[1])
    hit = np.zeros(len(coords), bool)
    hit[inside] = data[rc[inside, 0], rc[inside, 1]] == label
    return np.flatnonzero(hit)


def put_point(points, position, label: int, value: str, data: np.ndarray) -> None:
    """One point per counted nucleus: give the point on nucleus ``label`` the class ``value``, or add one
    at ``position`` (row, col) when the nucleus has none; extra points on the nucleus are removed."""
    coords = np.asarray(points.data, float).reshape(-1, 2)
    mine = points_on(label, coords, data)
    if mine.size:  # the nucleus has its point already: give it the new class, in place
        k = int(mine[0])
        points.features.loc[k, "class"] = value
        colors = np.array(points.face_color)
        colors[k] = point_colour(value)
        points.face_color = colors
        if mine.size > 1:
            remove_points(points, mine[1:])
        return
    if points.selected_data:
        points.selected_data = set()
    points.feature_defaults = {"class": value}
    points.current_face_color = point_colour(value)
    points.add(np.asarray(position, float)[None, -2:])


def drop_points(points, label: int, data: np.ndarray) -> None:
    """Remove the points on nucleus ``label`` (it was deleted)."""
    if not len(points.data):
        return
    mine = points_on(label, np.asarray(points.data, float), data)
    if mine.size:
        remove_points(points, mine)


def add_counts_layer(viewer, name: str, labels=None, *, coords=None, classes=()):
    """Add a counts layer: points (row, col) with a ``class`` feature, placed as the nuclei layer ``labels``."""
    classes = list(classes)
    colours = {"face_color": np.array([point_colour(c) for c in classes])} if classes else {}
    return viewer.add_points(np.zeros((0, 2)) if coords is None else coords, name=name, ndim=2, size=8,
                             features=pd.DataFrame({"class": pd.Series(classes, dtype=object)}),
                             border_color="white", scale=labels.scale[-2:] if labels is not None else None,
                             translate=labels.translate[-2:] if labels is not None else None, **colours)


def tie_counts(labels, points) -> None:
    """Make ``points`` the counts layer of the nuclei layer ``labels`` (see :func:`counts_layer_of`)."""
    labels.metadata.setdefault("ihcseg", {})[COUNTS_KEY] = points.name
