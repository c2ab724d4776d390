"""The counts layer of count mode: a Points layer tied to a nuclei Labels layer.

Each counted nucleus has one point whose ``features["class"]`` is the class
set by hand (``"positive"``, ``"negative"``, ``"0"`` .. ``"3"``, or ``""``
for none yet). The Count widget draws the points; the Save-pairs widget
reads them back to save count targets with the pairs.

The points layer may be placed otherwise than the nuclei layer (a layer of
the user's own): positions go between the two layers' pixels through world
coordinates (:func:`points_in_labels`, :func:`labels_to_points`). The tie
between the two is the points layer's ``unique_id``, so renaming either keeps it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_ihcseg import editing

#: Classes that count as positive.
POSITIVE_CLASSES = ("positive", "1", "2", "3")
#: Point colours: positive, negative, no class yet.
POINT_COLORS = {"positive": (0.85, 0.2, 0.15, 1.0), "negative": (0.25, 0.45, 0.95, 1.0), "": (1.0, 0.85, 0.1, 1.0)}
#: Key of ``labels.metadata["ihcseg"]`` holding the ``unique_id`` of the counts layer of a nuclei layer.
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
    """The counts (Points) layer tied to a nuclei layer in count mode, or ``None``.

    Found by the layer's ``unique_id`` (renaming it keeps the tie); a tie
    recorded by name, by earlier versions, is followed too.
    """
    tie = labels_layer.metadata.get("ihcseg", {}).get(COUNTS_KEY) if labels_layer is not None else None
    if not tie:
        return None
    for layer in viewer.layers:
        if getattr(layer, "unique_id", None) == tie:
            return layer
    return viewer.layers[tie] if tie in viewer.layers else None


def _data_map(source, target):
    """The affine map (matrix, offset) from ``source``'s data (row, col) to ``target``'s, through the world."""
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mapped = np.array([np.asarray(target.world_to_data(source.data_to_world(p)), float)[-2:] for p in corners])
    return np.stack([mapped[1] - mapped[0], mapped[2] - mapped[0]], axis=1), mapped[0]


def points_in_labels(points_layer, labels_layer) -> np.ndarray:
    """The positions of the points, (row, col) in the pixels of the nuclei layer (as they are without it)."""
    coords = np.asarray(points_layer.data, float).reshape(-1, np.shape(points_layer.data)[-1] or 2)[:, -2:]
    if labels_layer is None or not len(coords):
        return coords
    matrix, offset = _data_map(points_layer, labels_layer)
    return coords @ matrix.T + offset


def labels_to_points(points_layer, labels_layer, coords) -> np.ndarray:
    """Positions (row, col) in the pixels of the nuclei layer, in the points layer's data coordinates."""
    coords = np.asarray(coords, float).reshape(-1, 2)
    if labels_layer is None:
        return coords
    matrix, offset = _data_map(labels_layer, points_layer)
    return coords @ matrix.T + offset


def point_classes_text(points_layer) -> list[str]:
    """Each point's own class as text (``""`` for none)."""
    features = points_layer.features
    return list(class_column(features["class"])) if "class" in features else [""] * len(points_layer.data)


def counted_points(points_layer, labels_layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points in the nuclei layer's pixels, whether each is positive, and whether its class is known.

    A point's class is its own (``features["class"]``) or, when it has none,
    that of the scored nucleus under it.
    """
    coords = points_in_labels(points_layer, labels_layer)
    classes = point_classes_text(points_layer)
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


def class_column(values) -> pd.Series:
    """A ``class`` feature column as text: missing values (NaN) become ``""`` (no class yet).

    >>> class_column(pd.Series([np.nan, "positive", 2.0])).tolist()
    ['', 'positive', '2']
    """
    values = pd.Series(values)
    text = [("" if pd.isna(v) else v if isinstance(v, str) else
             str(int(v)) if isinstance(v, (int, float, np.number)) and float(v).is_integer() else str(v))
            for v in values]
    return pd.Series(text, index=values.index, dtype=object)


def ensure_class_feature(points) -> None:
    """Give a Points layer a text ``class`` feature (``""`` for its points so far) if it has none.

    An empty napari points layer given an empty column gets it as float64,
    which then refuses the text of every class; the column is made text here.
    """
    features = points.features
    if "class" in features and features["class"].dtype == object:
        return
    column = class_column(features["class"]) if "class" in features else pd.Series(
        [""] * len(features), index=features.index, dtype=object)
    points.features = features.assign(**{"class": column})
    set_class_default(points, "")


def set_class_default(points, value: str) -> None:
    """The class a point added next to ``points`` gets (the layer's other features keep their defaults)."""
    defaults = points.feature_defaults
    defaults = {k: defaults[k].iloc[0] for k in defaults.columns} if len(defaults) else {}
    points.feature_defaults = {**defaults, "class": value}


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


def put_point(points, position, label: int, value: str, data: np.ndarray, labels=None) -> None:
    """One point per counted nucleus: give the point on nucleus ``label`` the class ``value``, or add one
    at ``position`` (row, col in the nuclei layer ``labels``, whose pixels are ``data``) when the nucleus
    has none; extra points on the nucleus are removed."""
    mine = points_on(label, points_in_labels(points, labels), data)
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
    set_class_default(points, value)
    points.current_face_color = point_colour(value)
    points.add(labels_to_points(points, labels, np.asarray(position, float)[-2:]))


def drop_points(points, label: int, data: np.ndarray, labels=None) -> None:
    """Remove the points on nucleus ``label`` (it was deleted) of the nuclei layer ``labels`` (pixels ``data``)."""
    if not len(points.data):
        return
    mine = points_on(label, points_in_labels(points, labels), data)
    if mine.size:
        remove_points(points, mine)


def unclassified_left_bare(points, labels, data: np.ndarray, region, diff: np.ndarray) -> np.ndarray:
    """Indices of the points without a class whose pixel an edit just made background.

    ``region`` (slices) and ``diff`` (a boolean array over ``data[region]``)
    are where the edit changed pixels of the nuclei layer ``labels``, whose
    pixels are now ``data``. Such a point marked a nucleus grown by a click
    that was then undone or erased: with neither a class nor a nucleus it
    can be neither saved nor classified.
    """
    if not len(points.data) or "class" not in points.features:
        return np.zeros(0, int)
    bare = np.flatnonzero(class_column(points.features["class"]).to_numpy() == "")
    if not bare.size:
        return bare
    rc = np.round(points_in_labels(points, labels)[bare]).astype(int)
    (r0, r1, _), (c0, c1, _) = (sl.indices(n) for sl, n in zip(region, data.shape))
    inside = (rc[:, 0] >= r0) & (rc[:, 0] < r1) & (rc[:, 1] >= c0) & (rc[:, 1] < c1)
    hit = np.zeros(bare.size, bool)
    rr, cc = rc[inside, 0], rc[inside, 1]
    hit[inside] = diff[rr - r0, cc - c0] & (data[rr, cc] == 0)
    return bare[hit]


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
    labels.metadata.setdefault("ihcseg", {})[COUNTS_KEY] = points.unique_id
