"""Tiled prediction of nucleus probabilities for an image held in memory.

:func:`predict` cuts the image into overlapping tiles fitted to it
(:func:`~napari_ihcseg.inference.planning.plan_tiles`),
runs them through the model in batches on the chosen device, and blends the
tile predictions with a smooth window (:func:`blend_window`) into one mask and
one contour probability map. :func:`segment_image` adds the instance step and
returns labels. Blending runs on the device, so on a GPU only the two final
probability maps travel back to the host.

With ``scale != 1`` the image is resized by ``scale`` before the tiles are
cut (bilinear, anti-aliased when shrinking) and the two probability maps are
resized back to the image's shape, so a model trained at one magnification
can segment images taken at another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import InferenceConfig
from .control import CancelCheck, ProgressCallback, check_cancel, validate_callbacks
from .forward import forward_tiles
from .preprocess import apply_preprocess
from .runtime import Runtime, choose_batch_size, free_cached_memory, prepare_model, resolve_runtime
from .planning import SIZE_MULTIPLE, TilePlan, plan_tiles
from .results import Prediction, PredictionInfo, Segmentation
from .tiling import Box, Stitcher, blend_window

log = logging.getLogger("napari_ihcseg.inference")

def check_rgb_image(image, *, name: str = "image") -> np.ndarray:
    """Return ``image`` as a (H, W, 3) uint8 ndarray or raise a clear error."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        hint = " (drop the alpha channel with image[..., :3])" if arr.ndim == 3 and arr.shape[-1] == 4 else ""
        raise ValueError(f"{name} must be RGB of shape (H, W, 3), got shape {arr.shape}{hint}")
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 RGB, got dtype {arr.dtype} (convert with skimage.util.img_as_ubyte)")
    if min(arr.shape[:2]) < 1:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    return arr


def scaled_shape(shape: Sequence[int], scale: float) -> tuple[int, int]:
    """The height and width of an image of ``shape`` resized by ``scale`` (rounded, at least 1).

    Examples
    --------
    >>> scaled_shape((100, 75), 2.0), scaled_shape((100, 75), 0.5)
    ((200, 150), (50, 38))
    """
    return (max(1, round(int(shape[0]) * scale)), max(1, round(int(shape[1]) * scale)))


def resize_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize a (H, W, 3) uint8 image to ``shape`` (bilinear, anti-aliased when shrinking)."""
    size = (int(shape[0]), int(shape[1]))
    if size == image.shape[:2]:
        return image
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    shrink = size[0] < image.shape[0] or size[1] < image.shape[1]
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())


def _resize_probabilities(probs: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Resize (C, h, w) probabilities to ``shape`` (bilinear, anti-aliased when shrinking)."""
    shrink = shape[0] < probs.shape[1] or shape[1] < probs.shape[2]
    try:
        out = F.interpolate(probs[None], size=shape, mode="bilinear", align_corners=False, antialias=shrink)
    except (NotImplementedError, RuntimeError):  # e.g. anti-aliasing missing on this device
        out = F.interpolate(probs[None].cpu(), size=shape, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0].clamp_(0.0, 1.0)


def _box_in_image(box: Box, factors: tuple[float, float], shape: tuple[int, int]) -> Box:
    """A tile box of the resized image mapped back onto the input image (rounded outwards, clipped)."""
    fy, fx = factors
    return Box(int(np.floor(box.y0 / fy)), int(np.floor(box.x0 / fx)),
               int(np.ceil(box.y1 / fy)), int(np.ceil(box.x1 / fx))).clip(shape)


def predict(
    image,
    model: torch.nn.Module,
    config: InferenceConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    keep_tile: Callable[[Box], bool] | None = None,
    **options,
) -> Prediction:
    """Predict nucleus mask and contour probabilities tile by tile.

    Parameters
    ----------
    image : (H, W, 3) array_like of uint8
        RGB image of any size that fits in memory.
    model : torch.nn.Module
        A registered model or any module whose eval ``forward`` maps an
        N×3×h×w RGB batch in [0, 1] to ``(mask_logits, contour_logits)``,
        each N×1×h×w. It is put in eval mode and moved to ``device``; its
        ``size_multiple`` (default 32) constrains ``tile``.
    config : InferenceConfig, optional
        Tiling, device, precision, preprocessing, ``scale`` and ``tta``
        (the instance options are not used here); defaults otherwise. The
        tiles are fitted to the image by
        :func:`~napari_ihcseg.inference.planning.plan_tiles`: a field up to
        ``config.tile`` on a side runs as one tile, a larger one in the
        evenly spread tiles that compute the fewest pixels, blended over
        ``config.overlap`` with the window ``config.blend``. Without
        ``config.batch_size`` the batch is chosen from free memory on CUDA
        (:func:`~napari_ihcseg.inference.runtime.choose_batch_size`), on the
        CPU as many tiles as fit in two 512² tiles' pixels; on CUDA
        out-of-memory it is halved and retried. A ``device`` that is missing
        raises :class:`ValueError`. With ``scale != 1`` the image is resized
        (bilinear, anti-aliased when shrinking), tiled in the resized image's
        pixels, and the probabilities are resized back to the shape of
        ``image``; ``progress`` counts the tiles of the resized image. With
        ``tta`` each tile also runs flipped left-right, up-down and both, and
        the four predictions, flipped back, are averaged (four times the
        compute).
    progress : callable, optional
        ``progress(done, total)`` in tiles, first with ``done = 0``.
    cancel : threading.Event or callable, optional
        Checked before every batch; when set, :class:`Cancelled` is raised.
    keep_tile : callable, optional
        ``keep_tile(box) -> bool`` for each tile :class:`Box` (image
        coordinates); tiles it rejects are not run and pixels covered only by
        rejected tiles get probability 0. Used to skip background on slides
        (:meth:`TissueMask.has_tissue`). With ``scale != 1`` the box is the
        part of ``image`` the tile covers: the tile of the resized image
        mapped back to ``image`` coordinates, rounded outwards and clipped.
    **options
        Fields of :class:`InferenceConfig` that override ``config``, e.g.
        ``tile=256, device="cpu"``.

    Returns
    -------
    Prediction
        ``mask_prob`` and ``contour_prob``, (H, W) float32 in [0, 1], and
        ``info``, a :class:`PredictionInfo`.

    Raises
    ------
    Cancelled
        When ``cancel`` is set.
    ValueError, TypeError
        For a bad image, option, device or model output.

    Examples
    --------
    >>> import numpy as np, torch
    >>> class Flat(torch.nn.Module):
    ...     size_multiple = 32
    ...     def forward(self, x):
    ...         z = x[:, :1] * 0
    ...         return z, z - 10
    >>> pred = predict(np.zeros((100, 70, 3), np.uint8), Flat(), tile=64, overlap=16, device="cpu")
    >>> pred.mask_prob.shape, float(pred.mask_prob.max()), pred.info.tiles
    ((100, 70), 0.5, 4)
    """
    started = time.perf_counter()
    config = (config or InferenceConfig()).replace(**options)
    validate_callbacks(progress, cancel)
    scale = config.scale
    img = check_rgb_image(image)
    shape = (int(img.shape[0]), int(img.shape[1]))
    net_shape = scaled_shape(shape, scale)
    multiple = int(getattr(model, "size_multiple", SIZE_MULTIPLE))
    plan = plan_tiles(net_shape, tile=config.tile, overlap=config.overlap, size_multiple=multiple)
    runtime = resolve_runtime(config.device, amp=config.amp, channels_last=config.channels_last)
    keep = keep_tile
    if net_shape != shape:
        img = resize_image(img, net_shape)
        if keep_tile is not None:
            factors = (net_shape[0] / shape[0], net_shape[1] / shape[1])
            keep = lambda box: keep_tile(_box_in_image(box, factors, shape))  # noqa: E731
    img = apply_preprocess(img, config.preprocess)
    if plan.padded_shape != plan.shape:
        pad = ((0, plan.padded_shape[0] - plan.shape[0]), (0, plan.padded_shape[1] - plan.shape[1]), (0, 0))
        img = np.pad(img, pad, mode="symmetric")

    was_training = prepare_model(model, runtime)
    try:
        with torch.inference_mode():
            probs, used_batch, n_run = _run_tiles(img, model, plan, runtime, config.batch_size, config.blend,
                                                  progress, cancel, keep, config.tta)
            h, w = plan.shape
            probs = probs[:, :h, :w]
            if net_shape != shape:
                probs = _resize_probabilities(probs, shape)
    finally:
        model.train(was_training)
    probs = probs.cpu().numpy()
    mask_prob = np.ascontiguousarray(probs[0])
    contour_prob = np.ascontiguousarray(probs[1])
    info = PredictionInfo(str(runtime.device), runtime.describe(), runtime.precision, used_batch, n_run,
                          plan.tile_shape, time.perf_counter() - started, scale, config.tta)
    log.info("predicted %s", info.describe())
    return Prediction(mask_prob, contour_prob, info)


def _run_tiles(img, model, plan: TilePlan, runtime: Runtime, batch_size, blend, progress, cancel, keep_tile,
               tta: bool = False):
    """Run the tiles of ``plan`` that ``keep_tile`` accepts.

    Returns the blended probabilities (2, H, W) on the device, the final batch
    size and the number of tiles run.
    """
    dev = runtime.device
    stitcher = Stitcher(plan.padded_shape, channels=2, zeros=lambda s: torch.zeros(s, device=dev))
    windows: dict[tuple[bool, ...], torch.Tensor] = {}
    boxes = plan.boxes if keep_tile is None else tuple(b for b in plan.boxes if keep_tile(b))
    total = len(boxes)
    if batch_size is None:
        batch_size = choose_batch_size(model, plan.tile_shape, runtime, n_tiles=max(total, 1))
    if progress is not None:
        progress(0, total)
    done = 0
    while done < total:
        check_cancel(cancel)
        chunk = boxes[done:done + batch_size]
        tiles = np.stack([img[b.slices] for b in chunk])
        try:
            probs = forward_tiles(model, tiles, runtime, tta)
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size = max(1, len(chunk) // 2)
            free_cached_memory(runtime)
            log.warning("out of memory on %s; retrying with batch size %d", runtime.device, batch_size)
            continue
        for box, p in zip(chunk, probs):
            edges = box.edges(plan.padded_shape)
            if edges not in windows:
                windows[edges] = torch.from_numpy(
                    blend_window(plan.tile_shape, plan.overlap, blend, edges=edges)).to(dev)
            stitcher.add(box, p, windows[edges])
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return stitcher.result(), batch_size, total


def segment_image(
    image,
    model: torch.nn.Module,
    config: InferenceConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    keep_tile: Callable[[Box], bool] | None = None,
    **options,
) -> Segmentation:
    """Segment the nuclei of an image in memory: :func:`predict`, then instances.

    Parameters
    ----------
    image : (H, W, 3) array_like of uint8
        RGB image.
    model : torch.nn.Module
        See :func:`predict`.
    config : InferenceConfig, optional
        Tiling, device, precision and instance options; defaults otherwise.
    progress : callable, optional
        ``progress(done, total)``: one unit per tile (of the image resized
        by ``config.scale``) plus one for the instance step.
    cancel : threading.Event or callable, optional
        Checked before every batch and before the instance step.
    keep_tile : callable, optional
        Run only the tiles it accepts (see :func:`predict`).
    **options
        Fields of :class:`InferenceConfig` that override ``config``, e.g.
        ``tile=256, min_size=30, scale=2.0``.

    Returns
    -------
    Segmentation
        ``labels``, (H, W) int32 with 0 background and nuclei 1..N, and the
        ``prediction`` they came from (:class:`Prediction`: the mask and
        contour probabilities and how they were computed).

    Notes
    -----
    With ``scale != 1`` the network sees the image resized by ``scale`` and
    its probabilities are resized back before the instance step, so the
    labels have the shape of ``image`` and ``min_size`` and ``erode`` are in
    ``image`` pixels.

    Examples
    --------
    >>> import numpy as np, torch
    >>> class Disk(torch.nn.Module):  # "nucleus" wherever the red channel is dark
    ...     size_multiple = 32
    ...     def forward(self, x):
    ...         m = 20 * (0.5 - x[:, :1])
    ...         return m, m * 0 - 10
    >>> img = np.full((64, 64, 3), 255, np.uint8); img[10:20, 10:20] = 0; img[40:50, 30:45] = 0
    >>> labels = segment_image(img, Disk(), tile=64, overlap=16, device="cpu", amp=False).labels
    >>> int(labels.max()), labels.dtype.name
    (2, 'int32')
    """
    from ..instances import probabilities_to_instances

    config = (config or InferenceConfig()).replace(**options)
    validate_callbacks(progress, cancel)
    outer = progress
    n_tiles = 0

    def inner(done: int, total: int) -> None:
        nonlocal n_tiles
        n_tiles = total
        if outer is not None:
            outer(done, total + 1)

    prediction = predict(image, model, config, progress=inner, cancel=cancel, keep_tile=keep_tile)
    info = prediction.info
    check_cancel(cancel)
    backend = config.instance_backend
    if backend == "auto":
        backend = "torch" if info.device.startswith("cuda") else "numpy"
    labels = probabilities_to_instances(
        prediction.mask_prob, prediction.contour_prob, backend=backend,
        device=info.device if backend == "torch" else None,
        **config.instance_options(model),
    )
    if outer is not None:
        outer(n_tiles + 1, n_tiles + 1)
    return Segmentation(labels, prediction)
