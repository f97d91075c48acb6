"""Batched random geometric augmentation on any device, for consistency training."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError

__all__ = ["RandomAffine"]


class RandomAffine(nn.Module):
    """A different random rotation, scale and shift for every image of a batch.

    One ``affine_grid`` + ``grid_sample`` for the whole batch (no per-image Python loop),
    so it runs inside a training step on CPU or GPU. Pixels warped in from outside the
    image take ``fill``. In eval mode it is the identity.

    Args:
        degrees: largest rotation either way, degrees.
        translate: largest shift either way, as a fraction of the image side.
        scale: smallest and largest zoom factor.
        fill: value of the pixels warped in from outside (0: a black background, as in
            MNIST-style digits).
    """

    def __init__(
        self,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: tuple[float, float] = (0.9, 1.1),
        fill: float = 0.0,
    ) -> None:
        super().__init__()
        if degrees < 0 or translate < 0:
            raise InputError(f"degrees and translate must be >= 0, got {degrees} and {translate}")
        if not 0 < scale[0] <= scale[1]:
            raise InputError(
                f"scale must be (smallest, largest) with 0 < smallest <= largest, got {scale}"
            )
        self.degrees, self.translate, self.scale, self.fill = degrees, translate, tuple(scale), fill

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return images
        n = images.shape[0]
        options = {"device": images.device, "dtype": torch.float32}
        angle = (torch.rand(n, **options) * 2 - 1) * math.radians(self.degrees)
        low, high = self.scale
        zoom = low + torch.rand(n, **options) * (high - low)
        # affine_grid maps output to input coordinates in [-1, 1]: a shift of t (fraction of
        # the side) is 2t there; dividing by the zoom enlarges the content.
        shift = (torch.rand(n, 2, **options) * 2 - 1) * (2 * self.translate)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        shifted = images.float() - self.fill  # zeros padding then means "fill"
        warped = F.grid_sample(
            shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return (warped + self.fill).to(images.dtype)

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}, fill={self.fill}"
