"""Training folders as labs already have them: find the layout, read the good pairs, name the bad ones.

:func:`detect_layout` says which of :data:`LAYOUTS` a folder follows, and
:func:`load_folder` reads it into :class:`~napari_ihcseg.data.sample.Sample`
objects:

``pairs``
    The plugin's own training-pair folder (``images/``, ``masks/``,
    ``dataset.json``), read by :func:`~napari_ihcseg.pairs.read_pairs_folder`;
    files ``dataset.json`` does not list are ignored, with a warning.
``images-masks``
    ``images/`` and ``masks/`` matched by file stem (``masks/X.tif`` or
    ``masks/X_mask(s).png`` for ``images/X.png``), no ``dataset.json``.
``cellpose``
    Cellpose style: ``X.png`` and ``X_masks.png`` (or ``.tif``) in one folder.
``qupath``
    QuPath exports: ``X.png`` and ``X.geojson`` (or ``X.png.geojson``) of
    nucleus polygons (instance samples) or of points classified Positive /
    Negative (point samples).
``points-csv``
    Point counts beside images: ``X.png`` and ``X.csv`` (``type,x,y``).

Masks are instance label images. A binary mask (one value besides 0), or a
class mask (a few values, such as 1 positive and 2 negative, each over many
separate regions), is split into connected components, with a warning:
touching nuclei of one value then merge. A pair
with a problem (an unreadable file, a floating-point or colour mask, shapes
that differ, a missing partner, QuPath polygons that all lie outside their
image) is skipped with a message naming the file; the good pairs are still
used, and polygons of which only some lie outside are counted in a warning. When nothing fits, the error lists the known
layouts and what the folder holds.

Point samples carry ``points`` and ``point_classes`` and no mask; the trainer
refuses them until it learns from points (see ``docs/training.md``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_ihcseg.data.sample import Sample, read_sample_image
from napari_ihcseg.io.annotations import polygon_labels_in_image, read_polygons
from napari_ihcseg.io.image import file_pixel_size
from napari_ihcseg.io.labels import split_components
from napari_ihcseg.io.points import points_outside, read_points
from napari_ihcseg.pairs.layout import IMAGE_SUFFIXES, MANIFEST
from napari_ihcseg.pairs.reader import read_pairs_folder

#: The layouts known, in the order they are looked for, with how a person would describe them.
LAYOUTS = {
    "pairs": "napari-ihcseg training pairs (images/, masks/ and dataset.json)",
    "images-masks": "images/ + masks/ matched by file stem (instance label images)",
    "cellpose": "Cellpose style: X.png + X_masks.png|tif in one folder",
    "qupath": "QuPath export: X.png + X.geojson of nucleus polygons or classified points",
    "points-csv": "point counts beside images: X.png + X.csv (type,x,y)",
}
#: File endings read as masks.
MASK_SUFFIXES = (".tif", ".tiff", ".png")
#: Endings of a mask's stem that name its image's stem (``X_masks.png`` for ``X.png``).
MASK_ENDINGS = ("_masks", "_mask")


@dataclass
class FolderData:
    """What :func:`load_folder` found: the layout, the samples, and what it skipped and why."""

    folder: Path
    layout: str
    samples: list = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        return LAYOUTS[self.layout]

    def summary(self) -> str:
        """One line: the layout, the samples read and how many pairs were skipped."""
        kinds = Counter("points" if s.labels is None and s.mask is None else "masks" for s in self.samples)
        text = f"{self.folder}: {self.description}; {len(self.samples)} sample(s)"
        if kinds.get("points"):
            text += f" ({kinds['points']} with points only)"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped"
        return text


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _images(files) -> list[Path]:
    return [p for p in files if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            and not p.stem.lower().endswith(MASK_ENDINGS)]


def _one_per_name(images: list[Path], skipped: list[str]) -> list[Path]:
    """The images whose name (stem) no other image shares; each one that does is skipped, naming the others
    (``a.png`` beside ``a.jpg``: which is the one annotated cannot be told, and both would be sample ``a``)."""
    by_stem = Counter(p.stem.lower() for p in images)
    for p in images:
        if by_stem[p.stem.lower()] > 1:
            others = sorted(q.name for q in images if q != p and q.stem.lower() == p.stem.lower())
            skipped.append(f"{p}: shares its name with {', '.join(others)} beside it; keep one of them")
    return [p for p in images if by_stem[p.stem.lower()] == 1]


def _partner(image: Path, candidates: dict[str, Path], endings, suffixes) -> Path | None:
    """The file among ``candidates`` (lower-case name → path) named after ``image``."""
    for stem in (image.stem, image.name):
        for ending in endings:
            for suffix in suffixes:
                hit = candidates.get(f"{stem}{ending}{suffix}".lower())
                if hit is not None and hit != image:
                    return hit
    return None


def _flat_partners(folder: Path) -> dict[str, dict[Path, Path | None]]:
    files = _visible(folder)
    by_name = {p.name.lower(): p for p in files if p.is_file()}
    images = _images(files)
    return {
        "cellpose": {i: _partner(i, by_name, MASK_ENDINGS, MASK_SUFFIXES) for i in images},
        "qupath": {i: _partner(i, by_name, ("",), (".geojson", ".json")) for i in images},
        "points-csv": {i: _partner(i, by_name, ("",), (".csv",)) for i in images},
    }


def _found(folder: Path) -> str:
    files = _visible(folder)
    dirs = [p.name + "/" for p in files if p.is_dir()]
    suffixes = Counter(p.suffix.lower() or "(no ending)" for p in files if p.is_file())
    if not files:
        return "nothing"
    parts = [f"{n} {s}" for s, n in suffixes.most_common()]
    text = f"{sum(suffixes.values())} file(s)" + (f" ({', '.join(parts)})" if parts else "")
    return text + (f", folders {', '.join(dirs[:8])}" if dirs else "")


def detect_layout(folder) -> str:
    """Which of :data:`LAYOUTS` ``folder`` follows.

    Raises
    ------
    ValueError
        When none fits: the message lists the known layouts and what the folder holds.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    if (folder / MANIFEST).is_file():
        return "pairs"
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        return "images-masks"
    counts = {k: sum(v is not None for v in pairs.values()) for k, pairs in _flat_partners(folder).items()}
    best = max(counts, key=counts.get)  # ties: cellpose, then qupath, then points (dict order)
    if counts[best]:
        return best
    known = "; ".join(LAYOUTS.values())
    raise ValueError(f"{folder}: no known training layout (found {_found(folder)}). Known layouts: {known}")


# --------------------------------------------------------------------------- reading

#: A mask of at most this many ids, each over at least _CLASS_MASK_REGIONS_PER_VALUE separate regions and
#: _CLASS_MASK_MIN_REGIONS in all, is a class mask (an instance mask has one region per id, a few fragments aside).
_CLASS_MASK_VALUES = 8
_CLASS_MASK_REGIONS_PER_VALUE = 4
_CLASS_MASK_MIN_REGIONS = 8


def _read_mask(path: Path) -> tuple[np.ndarray, bool]:
    """Instance labels from a mask file, and whether it was a binary or class mask (split into components)."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            mask = np.asarray(tifffile.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as im:  # a palette mask (labelme, VOC) gives its indices, as read_labels does
                if im.mode not in ("P", "1", "L", "I", "I;16", "I;16B", "I;16L", "RGB", "RGBA"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                mask = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes one message
        raise ValueError(f"{path}: cannot read the mask ({exc})") from None
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        if not (mask[..., :3] == mask[..., :1]).all():
            raise ValueError(f"{path}: a colour mask; expected one channel of instance labels")
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D mask, got shape {mask.shape}")
    if np.issubdtype(mask.dtype, np.floating):
        raise ValueError(f"{path}: a floating-point mask ({mask.dtype}); expected integer instance labels "
                         "(one id per nucleus, 0 background)")
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer) or mask.min(initial=0) < 0:
        raise ValueError(f"{path}: expected non-negative integer instance labels, got {mask.dtype}")
    if mask.max(initial=0) > np.iinfo(np.int64).max:
        raise ValueError(f"{path}: label ids exceed the int64 range")
    values = np.unique(mask)
    binary = values.size == 2 and values[0] == 0
    if binary:
        return split_components(mask), True
    ids = int(np.count_nonzero(values))
    if 1 < ids <= _CLASS_MASK_VALUES:
        # A class mask (0 background, 1 positive, 2 negative...) is no instance image: its few values each
        # cover many separate nuclei. Each connected region of one value becomes a nucleus, as for a binary mask.
        from skimage.measure import label

        # 8-connected, so that a pixel touching its nucleus at a corner stays part of it.
        regions = label(mask, background=0, connectivity=2)
        if regions.max() >= max(_CLASS_MASK_REGIONS_PER_VALUE * ids, _CLASS_MASK_MIN_REGIONS):
            return regions.astype(np.int32), True
    # Ids above 2**31 - 1 are kept (in int64): the sample renumbers them.
    return mask.astype(np.int32 if mask.max(initial=0) <= np.iinfo(np.int32).max else np.int64), False


def _mask_sample(name: str, layout: str, image_path: Path, mask_path: Path, data: FolderData, binary: list) -> None:
    try:
        image = read_sample_image(image_path)
        labels, was_binary = _read_mask(mask_path)
    except ValueError as exc:
        data.skipped.append(str(exc))
        return
    if labels.shape != image.shape[:2]:
        data.skipped.append(f"{mask_path}: shape {labels.shape} differs from its image {image_path.name} "
                            f"{image.shape[:2]}")
        return
    if was_binary:
        binary.append(mask_path.name)
    data.samples.append(Sample(image, labels, name=name, source=layout, pixel_size_um=file_pixel_size(image_path)))


def _annotation_sample(name: str, layout: str, image_path: Path, ann_path: Path, data: FolderData) -> None:
    try:
        image = read_sample_image(image_path)
        region = points = None
        if layout == "qupath":
            polygons = read_polygons(ann_path)
            n_points, detected = _point_count(ann_path) if polygons else (0, False)
            # Outlines with at least as many points: QuPath's counting export (a tumour outline or two, the
            # nuclei clicked in it), unless QuPath detected the outlines (nuclei). Otherwise the outlines are
            # nuclei, and a stray point is left out.
            counting = n_points >= len(polygons) and not detected
            points, positive = read_points(ann_path) if counting else (None, None)
            if polygons and not counting:
                labels, note = polygon_labels_in_image(polygons, image.shape[:2], source=ann_path)
                if note:
                    data.warnings.append(note)
                if n_points:
                    data.warnings.append(f"{ann_path}: {n_points} point(s) beside {len(polygons)} nucleus "
                                         "outline(s) are not used (the outlines are the nuclei)")
                data.samples.append(Sample(image, labels, name=name, source=layout,
                                           pixel_size_um=file_pixel_size(image_path)))
                return
            if polygons:  # QuPath's counting export: the points in the region they were counted in
                region = polygon_labels_in_image(polygons, image.shape[:2], source=ann_path)[0] > 0
                data.warnings.append(f"{ann_path}: {len(points)} counted point(s) and {len(polygons)} outline(s); "
                                     "the points are the nuclei, the outlines the region they were counted in")
        if points is None:
            points, positive = read_points(ann_path)
    except (ValueError, OSError) as exc:
        data.skipped.append(str(exc) if str(ann_path) in str(exc) or str(image_path) in str(exc)
                            else f"{ann_path}: {exc}")
        return
    h, w = image.shape[:2]
    outside = points_outside(points, (h, w))
    if outside.any():
        data.skipped.append(f"{ann_path}: {int(outside.sum())} point(s) lie outside its image "
                            f"{image_path.name} ({h} x {w})")
        return
    if not len(points):
        data.skipped.append(f"{ann_path}: no points")
        return
    data.samples.append(Sample(image, None, name=name, source=layout, points=points, region=region,
                               point_classes=positive.astype(np.int8), pixel_size_um=file_pixel_size(image_path)))


def _point_count(path: Path) -> tuple[int, bool]:
    """How many points (``Point``, and each point of a ``MultiPoint``) a GeoJSON holds, whatever their class,
    and whether any outline in it is a QuPath detection or cell (a nucleus found by QuPath, not a region)."""
    from napari_ihcseg._json_file import read_json

    obj = read_json(path, expect=None)
    features = obj.get("features") if isinstance(obj, dict) and obj.get("type") == "FeatureCollection" else (
        obj if isinstance(obj, list) else [obj])
    count, detected = 0, False
    for feature in features if isinstance(features, list) else []:
        if not isinstance(feature, dict):
            continue
        geometry, props = feature.get("geometry"), feature.get("properties")
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        if kind == "Point":
            count += 1
        elif kind == "MultiPoint" and isinstance(geometry.get("coordinates"), list):
            count += len(geometry["coordinates"])
        if isinstance(props, dict) and str(props.get("objectType", "")).lower() in ("detection", "cell"):
            detected = True
    return count, detected


def load_folder(folder) -> FolderData:
    """Read a training folder in any of :data:`LAYOUTS`.

    Returns
    -------
    FolderData
        The layout, the samples (named ``<folder name>/<image stem>``), the
        skipped pairs (one message each, naming the file) and warnings.

    Raises
    ------
    ValueError
        When no layout fits, or no pair at all could be read (the message
        then gives the first problems).
    """
    folder = Path(folder).expanduser()
    layout = detect_layout(folder)
    data = FolderData(folder, layout)
    binary: list[str] = []
    if layout == "pairs":
        found = read_pairs_folder(folder)
        data.samples, data.skipped = found.samples, found.skipped
        if found.unlisted:
            data.warnings.append(found.unlisted_note())
    elif layout == "images-masks":
        images = _one_per_name(_images(_visible(folder / "images")), data.skipped)
        masks = {p.name.lower(): p for p in _visible(folder / "masks") if p.is_file()}
        used = set()
        for image in images:
            mask = _partner(image, masks, ("", *MASK_ENDINGS), MASK_SUFFIXES)
            if mask is None:
                data.skipped.append(f"{image}: no mask of the same name in masks/")
                continue
            used.add(mask)
            _mask_sample(f"{folder.name}/{image.stem}", layout, image, mask, data, binary)
        stems = {i.stem.lower() for i in images}
        for mask in sorted(set(masks.values()) - used):
            if mask.stem.lower() not in stems:
                data.skipped.append(f"{mask}: a mask without an image in images/")
    else:
        partners = _flat_partners(folder)[layout]
        kept = set(_one_per_name(list(partners), data.skipped))
        partners = {image: partner for image, partner in partners.items() if image in kept}
        for image, partner in partners.items():
            if partner is None:
                continue
            name = f"{folder.name}/{image.stem}"
            if layout == "cellpose":
                _mask_sample(name, layout, image, partner, data, binary)
            else:
                _annotation_sample(name, layout, image, partner, data)
        missing = [i for i, p in partners.items() if p is None]
        what = {"cellpose": "X_masks.png|tif", "qupath": "X.geojson", "points-csv": "X.csv"}[layout]
        data.skipped.extend(f"{i}: no partner beside it (expected {what})" for i in missing)
    if binary:
        data.warnings.append(f"{len(binary)} binary or class mask(s) (e.g. {binary[0]}: a few values, each over "
                             "many separate regions) were split into connected components: touching nuclei of "
                             "one value in them count as one")
    if not data.samples:
        if data.skipped:
            detail = "; ".join(data.skipped[:3])
        elif layout == "images-masks":
            detail = f"images/ holds {_found(folder / 'images')}, masks/ {_found(folder / 'masks')}"
        else:
            detail = f"found {_found(folder)}"
        raise ValueError(f"{folder}: {LAYOUTS[layout]}, but no pair could be read ({detail})")
    return data
