"""A learned regularizer for denoising: shrinkage of sliding-window DCT coefficients.

Classical transform-domain denoising (Yu & Sapiro 2011; the first stage of BM3D) cuts
every image window into its discrete cosine transform, removes the small coefficients and
averages the overlapping windows back. Here the threshold of every coefficient (per
frequency, per channel, per stage) is a parameter learned from data, and the hard step
becomes a soft one so that gradients reach it: a few hundred parameters, in the spirit of
shrinkage fields (Schmidt & Roth 2014). Colour images are shrunk in JPEG's luma and chroma,
where camera noise and its compression live. So few parameters learn in minutes on a CPU
and carry over to scenes the training never saw.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError
from lightning_synth.nn.total_variation import rgb_to_ycbcr, ycbcr_to_rgb

__all__ = ["DCTShrinkage", "dct_basis"]


def dct_basis(size: int) -> torch.Tensor:
    """The orthonormal 2-D DCT-II basis as ``size**2`` filters of ``1 x size x size``
    (row-major frequencies, the constant one first).

    Args:
        size: side of the window.
    """
    # Row u of the matrix is frequency u: the transform of the identity's columns.
    matrix = torch.from_numpy(scipy.fft.dct(np.eye(size), norm="ortho", axis=0))
    basis = torch.einsum("ux,vy->uvxy", matrix, matrix)
    return basis.reshape(size * size, 1, size, size).float()


class DCTShrinkage(nn.Module):
    """Denoising by learned shrinkage of sliding-window DCT coefficients.

    Every ``block x block`` window of each channel (luma and chroma for colour images) is
    transformed; each coefficient is scaled by ``sigmoid((|c| - t) / s)``, with a learned
    threshold ``t`` and softness ``s`` per frequency and channel (the constant coefficient
    is always kept); the windows are transformed back and averaged. ``stages`` such passes
    run one after the other, each with thresholds of its own.

    Args:
        in_channels: 1 (gray) or 3 (RGB, shrunk in BT.601 YCbCr).
        block: side of the DCT windows, in pixels.
        stages: shrinkage passes.
        threshold: initial threshold of every coefficient, in intensity units ([0, 1]
            images); about twice the noise's standard deviation is a good start.
        softness: initial width of the step between removed and kept, in intensity units.
    """

    def __init__(
        self,
        in_channels: int = 3,
        block: int = 8,
        stages: int = 2,
        threshold: float = 8 / 255,
        softness: float = 1 / 255,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise InputError(
                f"DCTShrinkage takes 1 or 3 channels, not {in_channels}: "
                "pass in_channels=1 (gray) or 3 (RGB)"
            )
        if block < 2 or stages < 1 or threshold <= 0 or softness <= 0:
            raise InputError(
                "DCTShrinkage needs block >= 2, stages >= 1 and a positive threshold and softness"
            )
        self.in_channels, self.block, self.stages = in_channels, block, stages
        self.register_buffer("basis", dct_basis(block).repeat(in_channels, 1, 1, 1))
        shape = (stages, in_channels * block * block, 1, 1)
        self.log_threshold = nn.Parameter(torch.full(shape, math.log(threshold)))
        self.log_softness = nn.Parameter(torch.full(shape, math.log(softness)))
        constant = torch.zeros(in_channels, block * block, dtype=torch.bool)
        constant[:, 0] = True
        self.register_buffer("constant", constant.reshape(-1, 1, 1), persistent=False)

    def shrink(self, image: torch.Tensor, stage: int) -> torch.Tensor:
        """One pass over ``B x C x H x W`` images (in the channels shrunk, YCbCr for colour).

        Args:
            image: the images.
            stage: which stage's thresholds.
        """
        pad = self.block - 1
        # Reflection keeps the borders from shrinking towards a zero frame.
        mode = "reflect" if min(image.shape[-2:]) > pad else "replicate"
        padded = F.pad(image, (pad, pad, pad, pad), mode=mode)
        basis = self.basis.to(image.dtype)
        coefficients = F.conv2d(padded, basis, groups=self.in_channels)
        threshold = self.log_threshold[stage].exp().to(image.dtype)
        softness = self.log_softness[stage].exp().to(image.dtype)
        keep = torch.sigmoid((coefficients.abs() - threshold) / softness)
        keep = keep.masked_fill(self.constant, 1.0)
        windows = F.conv_transpose2d(coefficients * keep, basis, groups=self.in_channels)
        return windows[..., pad:-pad, pad:-pad] / (self.block * self.block)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Denoised ``B x C x H x W`` images.

        Args:
            images: noisy images, ``C == in_channels``.
        """
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise InputError(
                f"DCTShrinkage(in_channels={self.in_channels}) got images of shape "
                f"{tuple(images.shape)}; pass B x {self.in_channels} x H x W"
            )
        colour = self.in_channels == 3
        signal = rgb_to_ycbcr(images) if colour else images
        for stage in range(self.stages):
            signal = self.shrink(signal, stage)
        return ycbcr_to_rgb(signal) if colour else signal
