"""What the inference functions return: one small frozen dataclass each.

Each function returns one type, whatever its options:

- :func:`~napari_ihcseg.inference.predict` returns a :class:`Prediction`
  (the two probability maps and a :class:`PredictionInfo`);
- :func:`~napari_ihcseg.inference.segment_image` returns a
  :class:`Segmentation` (the labels, and the prediction they came from);
- :func:`~napari_ihcseg.inference.segment_large` returns a
  :class:`LargeResult` (where the labels were written, and the counts).

The module imports neither torch nor the model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PredictionInfo:
    """What :func:`~napari_ihcseg.inference.predict` did: where, how fast, in how many tiles.

    ``device`` is the torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``),
    ``description`` names it for people, e.g. ``"cpu (2 threads), bf16, channels_last"``.
    ``tiles`` and ``tile_shape`` are those of the image resized by ``scale``;
    ``tta`` says whether each tile also ran flipped (test-time augmentation).

    Examples
    --------
    >>> PredictionInfo("cpu", "cpu (2 threads), fp32", "fp32", 4, 6, (256, 256), 1.5).describe()
    '6 tile(s) of 256×256 on cpu (2 threads), fp32, batch 4, in 1.50 s'
    """

    device: str
    description: str
    precision: str
    batch_size: int
    tiles: int
    tile_shape: tuple[int, int]
    seconds: float
    scale: float = 1.0
    tta: bool = False

    def describe(self) -> str:
        """One line for a log or a status bar."""
        scaled = f" of the image scaled ×{self.scale:g}" if self.scale != 1.0 else ""
        flips = " with flip test-time augmentation" if self.tta else ""
        return (f"{self.tiles} tile(s) of {self.tile_shape[0]}×{self.tile_shape[1]}{scaled} on {self.description}, "
                f"batch {self.batch_size}{flips}, in {self.seconds:.2f} s")


@dataclass(frozen=True)
class Prediction:
    """The probabilities of one image, from :func:`~napari_ihcseg.inference.predict`.

    Attributes
    ----------
    mask_prob, contour_prob : (H, W) ndarray of float32
        Nucleus and contour probabilities in [0, 1], at the image's shape.
    info : PredictionInfo
        The device, precision, batch size, tiles and time.
    """

    mask_prob: np.ndarray
    contour_prob: np.ndarray
    info: PredictionInfo


@dataclass(frozen=True)
class Segmentation:
    """The nuclei of one image, from :func:`~napari_ihcseg.inference.segment_image`.

    Attributes
    ----------
    labels : (H, W) ndarray of int32
        0 background, nuclei 1..N.
    prediction : Prediction
        The probabilities the labels were made from.
    """

    labels: np.ndarray
    prediction: Prediction

    @property
    def mask_prob(self) -> np.ndarray:
        """The nucleus probabilities (``prediction.mask_prob``)."""
        return self.prediction.mask_prob

    @property
    def contour_prob(self) -> np.ndarray:
        """The contour probabilities (``prediction.contour_prob``)."""
        return self.prediction.contour_prob

    @property
    def info(self) -> PredictionInfo:
        """How the prediction ran (``prediction.info``)."""
        return self.prediction.info


@dataclass(frozen=True)
class LargeResult:
    """What :func:`~napari_ihcseg.inference.segment_large` wrote.

    ``path`` is the output (zarr store or BigTIFF), ``shape`` the slide's
    height and width. ``blocks`` counts all blocks, ``skipped_blocks`` those
    without tissue, ``tiles`` the model tiles run, ``block`` and ``halo`` the
    core size and the context of a block, ``halo_touching`` the
    nuclei that touched the outer edge of their block's halo (0 when the
    halo is large enough).
    """

    path: Path
    shape: tuple[int, int]
    n_nuclei: int
    blocks: int
    skipped_blocks: int
    tiles: int
    block: int
    halo: int
    halo_touching: int
    seconds: float


__all__ = ["LargeResult", "Prediction", "PredictionInfo", "Segmentation"]
