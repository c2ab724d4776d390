"""Fakes shared by the tests: :class:`ODNet`, a fixed nucleus "model" that needs no trained weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_ihcseg.stain import H_DAB


class ODNet(nn.Module):
    """Hematoxylin + DAB optical density as the mask logit, its gradient as the contour logit.

    Colour deconvolution gives the stain densities; their sum, smoothed by a
    5×5 Gaussian, is the mask logit and its Sobel gradient magnitude the
    contour logit. The receptive field is 7×7 pixels, so tiles overlapping by
    more than that reproduce the prediction of the whole image.
    """

    size_multiple = 32
    arch = "odnet-test"

    def __init__(self, mask_at: float = 0.3, edge_at: float = 0.07, *, stains=(0,)) -> None:
        super().__init__()
        inv = np.linalg.inv(H_DAB.matrix).astype(np.float32)
        vec = inv[:, list(stains)].sum(axis=1)
        self.register_buffer("vec", torch.from_numpy(vec.copy()).view(1, 3, 1, 1))
        g = np.exp(-0.5 * np.arange(-2, 3) ** 2)
        g = np.outer(g, g) / np.outer(g, g).sum()
        self.register_buffer("blur", torch.from_numpy(g.astype(np.float32)).view(1, 1, 5, 5))
        sx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8
        self.register_buffer("sobel", torch.from_numpy(np.stack([sx, sx.T])).view(2, 1, 3, 3))
        self.mask_at, self.edge_at = mask_at, edge_at
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        od = -torch.log10(x.clamp_min(1 / 255))
        h = F.conv2d((od * self.vec).sum(1, keepdim=True), self.blur, padding=2)
        edge = F.conv2d(h, self.sobel, padding=1).pow(2).sum(1, keepdim=True).add(1e-6).sqrt()
        return 12.0 * (h - self.mask_at), 40.0 * (edge - self.edge_at)
