"""The image pixels a layer shows, and where nuclei labels lie on them.

Every panel that measures nuclei (Score, Save pairs, count mode) takes the
RGB pixels under a labels layer through :func:`labels_in_image`, so the
nuclei are scored, counted and saved on the pixels they are drawn on: their
place comes from the two layers' scale and translate (:func:`labels_origin`).
The Segment widget reads the part of an image on screen with
:func:`field_of_view` and records :func:`pixel_digest` for images that do
not come from a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import layer_source


def to_rgb_uint8(data, *, where: str = "image") -> np.ndarray:
    """An ``(H, W, 3)`` ``uint8`` copy of image data (RGBA and grey accepted)."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"{where}: expected a 2-D RGB image (H, W, 3), got shape {arr.shape}")
    arr = arr[..., :3]
    if (np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.uint16) and arr.size:
        from napari_ihcseg.io.content import value_range_top
        from napari_ihcseg.io.layout import to_uint8

        # As the file readers do: the range the values use (0-1, 0-255 or 0-65535 for floats; a camera's
        # 12 bits in 16, say), else a message naming the layer.
        arr = to_uint8(arr, where, value_range_top(arr, where))
    elif arr.dtype != np.uint8:
        from skimage.util import img_as_ubyte

        arr = img_as_ubyte(arr)
    return np.ascontiguousarray(arr)


def pixel_digest(data, samples: int = 256) -> str:
    """A short digest of an image's pixels, read on a grid of at most ``samples`` x ``samples`` points."""
    import hashlib

    h, w = np.shape(data)[:2]
    grid = np.ascontiguousarray(np.asarray(data[:: max(1, h // samples), :: max(1, w // samples)]))
    return hashlib.sha1(grid.tobytes() + str(grid.shape).encode()).hexdigest()[:12]


def image_level0(layer):
    """The full-resolution array of an image layer (level 0 when multiscale)."""
    return layer.data[0] if layer.multiscale else layer.data


def viewer_camera(viewer):
    """The viewer's camera (napari >= 0.9 moved it to ``viewer.scene``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def field_of_view(layer, viewer) -> tuple[int, int, int, int]:
    """The part of an image layer on screen, as ``(y0, x0, y1, x1)`` in full-resolution pixels.

    Computed from the camera (centre, zoom) and the canvas size, so it is the
    view itself at any resolution level (a multiscale layer's own corner
    pixels cover the loaded chunks, which can be much larger).
    """
    h, w = (float(v) for v in viewer.canvas.size)
    camera = viewer_camera(viewer)
    zoom = float(camera.zoom)
    cy, cx = (float(v) for v in camera.center[-2:])
    point = np.asarray(viewer.dims.point, dtype=float)
    corners = []
    for dy, dx in ((-1, -1), (1, 1)):
        p = point.copy()
        p[-2:] = (cy + dy * h / 2 / zoom, cx + dx * w / 2 / zoom)
        corners.append(np.asarray(layer.world_to_data(p), dtype=float)[-2:])
    lo, hi = np.minimum(*corners), np.maximum(*corners)
    full = image_level0(layer).shape[:2]
    y0, x0 = (max(int(np.floor(v)), 0) for v in lo)
    y1, x1 = min(int(np.ceil(hi[0])) + 1, full[0]), min(int(np.ceil(hi[1])) + 1, full[1])
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"{layer.name} is not in view; pan to the region to segment")
    return y0, x0, y1, x1


def _check_made_on(image_layer, labels_layer, meta: dict) -> None:
    """Refuse an image other than the one the nuclei were segmented on (same file, same layer name, or,
    for an image not read from a file, the same pixels under another name).

    Another image of the same size would put one slide's pixels under
    another slide's nuclei: scored, counted or saved as a training pair.
    """
    made_on = meta.get("image_layer")
    if not made_on or made_on == image_layer.name:
        return
    source, here = meta.get("source"), layer_source(image_layer)
    if source and (source == image_layer.name or (here and Path(source).expanduser().resolve()
                                                  == Path(here).expanduser().resolve())):
        return  # the same file, opened again or renamed
    if meta.get("image_digest") and not here and meta["image_digest"] == pixel_digest(image_level0(image_layer)):
        return  # the same pixels, the layer renamed
    raise ValueError(f"{labels_layer.name} was segmented on the image '{made_on}', not on '{image_layer.name}'; "
                     f"choose that image, or segment '{image_layer.name}'")


def _placement(layer) -> tuple[np.ndarray, np.ndarray]:
    """A layer's ``(scale, translate)`` in its last two (row, column) dimensions."""
    return np.asarray(layer.scale, float)[-2:], np.asarray(layer.translate, float)[-2:]


def layer_origin(layer) -> tuple[int, int]:
    """Where a field of view's labels lie in the full image (row, col), as the Segment widget records it in the
    layer's metadata (``ihcseg.origin``); (0, 0) for a whole image or without a record."""
    meta = layer.metadata.get("ihcseg", {}) if isinstance(layer.metadata, dict) else {}
    try:
        y0, x0 = (int(v) for v in meta.get("origin", (0, 0)))
    except (TypeError, ValueError):
        return 0, 0
    return y0, x0


def labels_origin(image_layer, labels_layer) -> tuple[int, int]:
    """Where the labels' pixel (0, 0) lies in the image's full-resolution pixels, as ``(row, col)``.

    The labels lie on the pixels they are shown on: their place comes from
    the two layers' scale and translate (kept by the plugin's writer and
    reader). A labels layer at napari's default place (scale 1, translate 0)
    is put where its metadata ``ihcseg.origin`` says, else at (0, 0).
    ``image_layer`` None stands for an image shown untranslated at the
    labels' pixel size (count mode without an image chosen).

    Raises
    ------
    ValueError
        When the labels are drawn at another pixel size than the image, or
        between its pixels.
    """
    scale, translate = _placement(labels_layer)
    if np.allclose(scale, 1.0) and np.allclose(translate, 0.0):
        return layer_origin(labels_layer)
    image_scale, image_translate = (scale, np.zeros(2)) if image_layer is None else _placement(image_layer)
    if not np.allclose(scale, image_scale, rtol=1e-6, atol=0.0):
        raise ValueError(f"{labels_layer.name} is shown at a pixel size of {tuple(scale.tolist())}, "
                         f"{image_layer.name} at {tuple(image_scale.tolist())}: the nuclei are not drawn on "
                         "its pixels; give both layers one scale")
    offset = (translate - image_translate) / image_scale
    if not np.allclose(offset, np.round(offset), atol=1e-3):
        image_name = "its image" if image_layer is None else image_layer.name
        raise ValueError(f"{labels_layer.name} lies between the pixels of {image_name} (offset "
                         f"{tuple(np.round(offset, 3).tolist())} pixels); translate it by whole pixels")
    y0, x0 = (int(v) for v in np.round(offset))
    return y0, x0


def labels_in_image(image_layer, labels_layer) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The labels, the RGB pixels they lie on, and where they lie in the full-resolution image
    (:func:`labels_origin`)."""
    labels = labels_layer.data
    if isinstance(labels, list) or getattr(labels_layer, "multiscale", False):
        raise ValueError(f"{labels_layer.name}: whole-slide labels are not held in memory; "
                         "segment a field of view to correct, score or save it")
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{labels_layer.name} is not one 2-D image of nuclei (shape {labels.shape}); "
                         "choose a 2-D Labels layer")
    meta = labels_layer.metadata.get("ihcseg", {})
    _check_made_on(image_layer, labels_layer, meta)
    y0, x0 = labels_origin(image_layer, labels_layer)
    base = image_level0(image_layer)
    h, w = labels.shape
    if y0 < 0 or x0 < 0 or y0 + h > base.shape[0] or x0 + w > base.shape[1]:
        raise ValueError(f"{labels_layer.name} ({h}x{w} at y={y0}, x={x0}) does not fit in the image "
                         f"{image_layer.name} ({base.shape[0]}x{base.shape[1]})")
    image = to_rgb_uint8(base[y0:y0 + h, x0:x0 + w], where=image_layer.name)
    return image, labels, (y0, x0)
