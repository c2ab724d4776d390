"""One forward pass of a batch of tiles: uint8 RGB in, mask and contour probabilities out.

The tiles go to the device as NHWC uint8 (already ``channels_last`` in
memory once permuted), are scaled to [0, 1] there, and run under the
runtime's autocast. With test-time augmentation the model also sees the
tiles flipped, and the flipped-back probabilities are averaged.
"""

from __future__ import annotations

import numpy as np
import torch

from .runtime import Runtime


#: The flips averaged by test-time augmentation, as tensor dims of an NCHW
#: batch: none, left-right, up-down, both.
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


def forward_tiles(model: torch.nn.Module, tiles: np.ndarray, runtime: Runtime, tta: bool = False) -> torch.Tensor:
    """Probabilities (N, 2, h, w) float32 on the device for uint8 tiles (N, h, w, 3).

    With ``tta`` the model also sees the tiles flipped left-right, up-down and
    both, and the four probability maps, flipped back, are averaged.
    """
    x = torch.from_numpy(tiles).to(runtime.device, non_blocking=True)
    # NHWC uint8 permuted to NCHW is already channels_last in memory.
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    x = x.contiguous(memory_format=runtime.memory_format)
    total = probabilities(model, x, runtime)
    if tta:
        for dims in TTA_FLIPS[1:]:
            flipped = x.flip(dims).contiguous(memory_format=runtime.memory_format)
            total.add_(probabilities(model, flipped, runtime).flip(dims))
        total.div_(len(TTA_FLIPS))
    return total


def probabilities(model: torch.nn.Module, x: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """One forward pass: sigmoid of the model's two logit maps, (N, 2, h, w) float32."""
    with runtime.autocast():
        out = model(x)
    if not isinstance(out, (tuple, list)) or len(out) < 2:
        raise TypeError(
            f"the model must return (mask_logits, contour_logits) in eval mode, got {type(out).__name__}"
        )
    mask, contour = out[0], out[1]
    expected = (x.shape[0], 1, x.shape[2], x.shape[3])
    if tuple(mask.shape) != expected or tuple(contour.shape) != expected:
        raise ValueError(
            f"the model returned logits of shapes {tuple(mask.shape)} and {tuple(contour.shape)} "
            f"for an input of {tuple(x.shape)}; expected {expected} each"
        )
    return torch.sigmoid(torch.cat([mask, contour], dim=1).float())
