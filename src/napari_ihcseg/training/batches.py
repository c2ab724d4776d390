"""Deterministic training batches: which crops make step ``s`` of epoch ``e``.

An epoch is one pass over the grid windows of the training images (see
:mod:`napari_ihcseg.training.tiles`) in an order shuffled by ``(seed, epoch)``.
Each crop of a batch gets its own generator seeded by
``(seed, epoch, step, position)``, so any batch can be rebuilt from its
coordinates alone: resuming at step ``s`` continues with exactly the batches
an uninterrupted run would have seen. A fraction of the crops is replaced by
synthetic IHC fields with exact instance truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_ihcseg.data.targets import labels_to_contour

from .augment import AugmentConfig, augment
from .tiles import Crop, grid_windows, random_crop

#: Contour band width of the targets (2–3 px: thin contours trap training).
CONTOUR_WIDTH = 2


@dataclass(frozen=True, eq=False)
class Batch:
    """Arrays of one training step, channels first, ready for torch.

    ``image`` is float32 (N, 3, H, W) in [0, 1]; ``mask``, ``contour`` and
    ``valid`` are float32 (N, 1, H, W); ``contour_weight`` is float32 (N,),
    0 for crops without instance boundaries.
    """

    image: np.ndarray
    mask: np.ndarray
    contour: np.ndarray
    valid: np.ndarray
    contour_weight: np.ndarray


def crop_targets(crop: Crop, *, contour_width: int = CONTOUR_WIDTH) -> tuple[np.ndarray, np.ndarray, float]:
    """Mask, contour and contour weight of a crop.

    Crops with instance labels get ``labels > 0`` and the contour band, weight
    1; mask-only crops get the mask, an empty contour and weight 0.
    """
    if crop.labels is not None:
        return crop.labels > 0, labels_to_contour(crop.labels, width=contour_width), 1.0
    if crop.mask is None:
        raise ValueError("a training crop needs labels or a mask")
    return crop.mask.astype(bool), np.zeros(crop.mask.shape, bool), 0.0


def synthetic_crop(rng: np.random.Generator, tile: int) -> tuple[Crop, str]:
    """A synthetic IHC field of size ``tile`` with exact instance labels."""
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    field = make_synthetic_ihc((tile, tile), seed=int(rng.integers(0, 2**31 - 1)))
    labels = np.asarray(field.labels, dtype=np.int32)
    return Crop(image=np.asarray(field.image), labels=labels, mask=labels > 0,
                valid=np.ones((tile, tile), bool)), "IHC"


class BatchSampler:
    """Builds the batches of a training run from its samples.

    Parameters
    ----------
    samples : sequence of Sample
        Training images with ``labels`` or ``mask``.
    tile : int
        Crop size (a multiple of the model's size multiple, e.g. 256).
    stride : int
        Grid step; each epoch visits every non-empty grid window once.
    batch_size : int
    seed : int
    augment : AugmentConfig
    synthetic_fraction : float
        Probability that a crop is a synthetic IHC field instead.
    min_steps : int
        Lower bound on the steps of an epoch (small data sets).
    """

    def __init__(self, samples, *, tile: int, stride: int, batch_size: int, seed: int,
                 augment: AugmentConfig, synthetic_fraction: float = 0.0, min_steps: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0.0 <= synthetic_fraction <= 1.0:
            raise ValueError(f"synthetic_fraction must be in [0, 1], got {synthetic_fraction}")
        self.samples = list(samples)
        if not self.samples and synthetic_fraction < 1.0:
            raise ValueError("no training samples (and synthetic_fraction < 1)")
        self.tile, self.stride, self.batch_size, self.seed = tile, stride, batch_size, seed
        self.augment = augment
        self.synthetic_fraction = synthetic_fraction
        self.windows = grid_windows(self.samples, tile=tile, stride=stride, drop_empty=True)
        if self.samples and not self.windows:
            raise ValueError("every training tile is empty (no nucleus pixel in any sample)")
        self.steps_per_epoch = max(min_steps, -(-len(self.windows) // batch_size))

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 0xC0FFEE]).permutation(max(1, len(self.windows)))

    def crop(self, epoch: int, step: int, position: int, order: np.ndarray | None = None) -> tuple[Crop, str]:
        """The augmented crop at ``position`` of ``step`` in ``epoch``, and its stain."""
        rng = np.random.default_rng([self.seed, epoch, step, position])
        if not self.windows or rng.random() < self.synthetic_fraction:
            crop, stain = synthetic_crop(rng, self.tile)
        else:
            order = self._order(epoch) if order is None else order
            window = self.windows[order[(step * self.batch_size + position) % len(order)]]
            sample = self.samples[window.index]
            crop = random_crop(sample, window, tile=self.tile, stride=self.stride, rng=rng,
                               scale_range=self.augment.scale_range)
            stain = sample.stain
        return augment(crop, rng, self.augment, stain=stain), stain

    def batch(self, epoch: int, step: int) -> Batch:
        """The arrays of step ``step`` of epoch ``epoch`` (both from 0)."""
        order = self._order(epoch)
        images, masks, contours, valids, weights = [], [], [], [], []
        for position in range(self.batch_size):
            crop, _ = self.crop(epoch, step, position, order)
            mask, contour, weight = crop_targets(crop)
            images.append(crop.image.transpose(2, 0, 1).astype(np.float32) / 255.0)
            masks.append(mask[None].astype(np.float32))
            contours.append(contour[None].astype(np.float32))
            valids.append(crop.valid[None].astype(np.float32))
            weights.append(weight)
        return Batch(image=np.stack(images), mask=np.stack(masks), contour=np.stack(contours),
                     valid=np.stack(valids), contour_weight=np.asarray(weights, np.float32))
