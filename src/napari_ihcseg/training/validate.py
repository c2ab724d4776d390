"""Validation during training: whole-image prediction and Dice / AJI / PQ.

Each validation image is predicted whole (reflect-padded to a multiple of the
model's size multiple, then cropped back), turned into instances with
:func:`napari_ihcseg.instances.probabilities_to_instances`, and compared with
its labels. Figures are averaged per image within each source, and the
overall figure is the mean over sources, so that a small IHC set weighs as
much as a large H&E one.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from ..inference.planning import SIZE_MULTIPLE

#: Images larger than this (pixels per side) are predicted in overlapping tiles.
WHOLE_IMAGE_MAX = 1536
#: Figures reported per validation image.
VAL_METRICS = ("dice", "aji", "pq")


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CPU and CUDA, or a no-op."""
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.inference_mode()
def predict_probabilities(model: torch.nn.Module, image: np.ndarray, *, device: torch.device,
                          amp: bool = True, channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mask and contour probabilities of one RGB image, in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        A registered model (eval-mode outputs ``(mask_logits, contour_logits)``).
    image : (H, W, 3) uint8
    device : torch.device
    amp : bool
        bf16 autocast.
    channels_last : bool
        Feed the input in channels-last memory format.

    Returns
    -------
    mask_prob, contour_prob : (H, W) float32 arrays
    """
    multiple = int(getattr(model, "size_multiple", SIZE_MULTIPLE))
    h, w = image.shape[:2]
    if max(h, w) > WHOLE_IMAGE_MAX:
        return _predict_tiled(model, image, device=device, amp=amp, channels_last=channels_last)
    ph, pw = -h % multiple, -w % multiple
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)[None]
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    x = F.pad(x, (0, pw, 0, ph), mode=mode).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, amp):
        out = model(x)
    mask_logits, contour_logits = out[0], out[1]
    mask = torch.sigmoid(mask_logits.float())[0, 0, :h, :w].cpu().numpy()
    contour = torch.sigmoid(contour_logits.float())[0, 0, :h, :w].cpu().numpy()
    return mask, contour


def _predict_tiled(model, image, *, device, amp, channels_last, tile: int = 1024, overlap: int = 128):
    from ..inference.tiling import tile_starts

    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    contour = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    for y in tile_starts(h, tile, overlap):
        for x in tile_starts(w, tile, overlap):
            part = image[y:y + tile, x:x + tile]
            m, c = predict_probabilities(model, part, device=device, amp=amp, channels_last=channels_last)
            mask[y:y + part.shape[0], x:x + part.shape[1]] += m
            contour[y:y + part.shape[0], x:x + part.shape[1]] += c
            count[y:y + part.shape[0], x:x + part.shape[1]] += 1
    return mask / count, contour / count


def evaluate_samples(model: torch.nn.Module, samples, *, device: torch.device, amp: bool = True,
                     channels_last: bool = False, min_size: int = 16, cancel=None) -> dict:
    """Dice, AJI and PQ of ``model`` on labelled samples.

    Samples without instance labels are scored on Dice only.

    Returns
    -------
    dict
        ``{"dice": .., "aji": .., "pq": .., "per_source": {source: {...}},
        "per_image": {name: {...}}}``; the overall figures are the mean over
        sources of the per-source means (NaN when nothing was scored).
    """
    from napari_ihcseg.instances import probabilities_to_instances
    from napari_ihcseg.metrics import average_by_source, evaluate_instances

    was_training = model.training
    model.eval()
    per_image: dict[str, dict[str, float]] = {}
    by_source: dict[str, list[dict[str, float]]] = defaultdict(list)
    try:
        for sample in samples:
            if cancel is not None and cancel():
                break
            mask_prob, contour_prob = predict_probabilities(model, sample.image, device=device, amp=amp,
                                                            channels_last=channels_last)
            if sample.labels is not None:
                pred = probabilities_to_instances(mask_prob, contour_prob, min_size=min_size)
                m = evaluate_instances(pred, sample.labels)
                row = {k: float(m[k]) for k in VAL_METRICS}
            else:
                pred = mask_prob > 0.5
                truth = sample.mask
                inter = float(np.logical_and(pred, truth).sum())
                total = float(pred.sum() + truth.sum())
                row = {"dice": 2 * inter / total if total else 1.0, "aji": float("nan"), "pq": float("nan")}
            per_image[sample.name] = row
            by_source[sample.source].append(row)
    finally:
        model.train(was_training)
    overall, per_source = average_by_source(by_source, VAL_METRICS)
    return {**overall, "per_source": per_source, "per_image": per_image}


def tune_checkpoint(folder, samples, *, device: torch.device | str = "cpu", amp: bool = True,
                    channels_last: bool = False, grid=None, scale: float | str = 1.0, cancel=None):
    """Tune a checkpoint's instance settings on labelled images and store them in it.

    The checkpoint's model predicts every sample with instance labels once,
    through the inference path (:func:`~napari_ihcseg.inference.predict`
    with its default tiling, at ``scale``), so the settings are chosen on
    the probabilities they will be applied to;
    :func:`~napari_ihcseg.instances.tune_instance_params` then picks the
    thresholds and ``min_size`` with the best mean of AJI and PQ, and
    :func:`~napari_ihcseg.models.set_instance_params` writes them, with how
    they were chosen, into the checkpoint's ``config.json``.

    Parameters
    ----------
    folder : path-like
        A checkpoint folder.
    samples : sequence of Sample
        Validation images; those without instance labels are skipped.
    device, amp, channels_last
        As for :func:`~napari_ihcseg.inference.predict`.
    grid : mapping, optional
        The settings to try (default
        :data:`~napari_ihcseg.instances.tuning.DEFAULT_GRID`).
    scale : float or "auto"
        The factor each image is resized by for the model, as in
        :class:`~napari_ihcseg.inference.InferenceConfig`; ``"auto"``
        chooses it per image as segmenting with ``scale="auto"`` does
        (:func:`~napari_ihcseg.inference.autoscale.estimate_scale`): from the
        pixel size the sample records (``Sample.pixel_size_um``, from its
        file or the pairs' manifest), else from the size of the nuclei a
        first pass finds. The default 1 suits images
        already at the model's training scale (a training run's validation
        images). ``min_size`` is tuned in the model's pixels either way.
    cancel : callable, optional
        Returns True to stop; nothing is written then.

    Returns
    -------
    TuningResult or None
        ``None`` when no sample has instance labels or the run was cancelled.
    """
    from napari_ihcseg.device import resolve_device
    from napari_ihcseg.inference import InferenceConfig, predict
    from napari_ihcseg.inference.autoscale import central_crop, resolve_scale
    from napari_ihcseg.instances import tune_instance_params
    from napari_ihcseg.models import load_checkpoint, set_instance_params

    labelled = [s for s in samples if s.labels is not None]
    if not labelled:
        return None
    device = resolve_device(device)
    model = load_checkpoint(folder, device=device)
    options = InferenceConfig(device=str(device), amp=amp, channels_last=channels_last)
    predictions, scales = [], []
    for sample in labelled:
        if cancel is not None and cancel():
            return None
        image_scale = resolve_scale(scale, lambda size, image=sample.image: central_crop(image, size), model,
                                    pixel_size_um=sample.pixel_size_um, config=options).scale
        prediction = predict(sample.image, model, options.replace(scale=image_scale))
        predictions.append((prediction.mask_prob, prediction.contour_prob))
        scales.append(image_scale)
    result = tune_instance_params(predictions, [s.labels for s in labelled], sources=[s.source for s in labelled],
                                  grid=grid, scales=scales, cancel=cancel)
    if cancel is not None and cancel():
        return None
    set_instance_params(folder, result.params, tuning=result.to_card())
    return result


def tune_checkpoint_copy(source, out, samples, *, device: torch.device | str = "cpu", amp: bool = True,
                         grid=None, scale: float | str = 1.0, cancel=None):
    """Tune a copy of a checkpoint (see :func:`tune_checkpoint`), written to ``out`` only once tuned.

    The copy is made and tuned in a hidden folder beside ``out`` and renamed
    to ``out`` at the end, so a failed, interrupted or cancelled run leaves
    nothing behind and ``source`` is never changed.

    Parameters
    ----------
    source : path-like
        A checkpoint folder.
    out : path-like
        The new checkpoint folder; it must not exist, or be an empty folder.
    samples, device, amp, grid, scale, cancel
        As for :func:`tune_checkpoint`.

    Returns
    -------
    TuningResult or None
        ``None`` (and no ``out``) when no sample has instance labels or the
        run was cancelled.

    Raises
    ------
    FileExistsError
        If ``out`` exists and is not an empty folder.
    """
    import shutil
    from pathlib import Path

    from napari_ihcseg._atomic import atomic_directory

    source, out = Path(source).expanduser(), Path(out).expanduser()
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise FileExistsError(f"{out}: already exists and is not an empty folder")
    try:
        with atomic_directory(out, overwrite=out.exists()) as staging:  # an empty folder may be replaced
            staging.mkdir()
            for name in ("weights.safetensors", "config.json"):
                shutil.copy2(source / name, staging / name)
            result = tune_checkpoint(staging, samples, device=device, amp=amp, grid=grid, scale=scale,
                                     cancel=cancel)
            if result is None:
                raise _NothingTuned  # leaves no copy behind
    except _NothingTuned:
        return None
    return result


class _NothingTuned(Exception):
    """Nothing to tune on, or cancelled: the copy is dropped."""
