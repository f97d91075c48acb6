"""Canonical framing: every digit cropped, scaled and centred the way MNIST was made.

Real digit sets frame their digits in their own way: MNIST scales each digit's bounding
box into a 20-pixel box and centres it by its centre of mass in 28 x 28; others crop
tight so that the digit fills the frame, or leave wide margins. A network trained on
one framing meets the other as a domain gap that feature alignment cannot undo.
Framing both domains the same way removes that gap by construction.

Use it (``MixedDomainDataModule(framing="canonical")``) when the real digits are framed
unlike the renderer's, or when you do not know how they are framed. It costs nothing
to use on data already framed like MNIST, whose framing it reproduces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError
from lightning_synth.image_io import rgb_to_gray

__all__ = ["CanonicalFraming", "canonical_frame", "MNIST_BOX"]

#: MNIST's framing: the digit's bounding box is scaled into 20 of the 28 pixels.
MNIST_BOX = 20 / 28
#: Samples per output pixel and axis, averaged: anti-aliasing for shrinking up to 4x, and
#: the same for every image, so that an image frames alike in any batch.
_SUPERSAMPLING = 4


def canonical_frame(
    images: torch.Tensor,
    size: int,
    box: int | None = None,
    threshold: float = 0.3,
    min_contrast: float = 0.05,
) -> torch.Tensor:
    """Crop each image to its ink, scale it into a ``box``-pixel square keeping its
    aspect ratio, and place it so that the ink's centre of mass is the frame's centre.

    Ink is the minority intensity of each image (light strokes on a dark ground or dark
    strokes on a light ground, told apart per image), so both polarities frame alike and
    keep their own colours; the ground fills what the digit does not cover. Each output
    pixel averages 4 x 4 samples, which anti-aliases shrinking.

    Args:
        images: ``B x C x H x W`` float images in [0, 1], on any device.
        size: height and width of the framed images.
        box: side in pixels of the square the ink's bounding box is scaled into (its
            longer side fills it); ``None``: MNIST's proportion, ``round(size * 20 / 28)``.
        threshold: a pixel is ink, for the bounding box, when it lies this fraction of
            the image's intensity range away from the ground.
        min_contrast: images whose intensity range is below this have no ink (blank):
            they are only resized.

    Returns:
        ``B x C x size x size`` framed images.
    """
    if images.ndim != 4:
        raise ValueError(f"expected B x C x H x W images, got shape {tuple(images.shape)}")
    box = round(size * MNIST_BOX) if box is None else int(box)
    if not 1 <= box <= size:
        raise ValueError(f"the box must hold 1 to {size} pixels, got {box}")
    batch, channels, height, width = images.shape
    if batch == 0:
        return images.new_zeros(0, channels, size, size)
    device = images.device
    gray = (rgb_to_gray(images) if channels == 3 else images.mean(1, keepdim=True))[:, 0]
    low = gray.amin((1, 2), keepdim=True)
    span = gray.amax((1, 2), keepdim=True) - low
    level = (gray - low) / span.clamp_min(1e-6)
    dark_ink = (level > 0.5).float().mean((1, 2)) > 0.5  # light pixels are the majority
    ink = torch.where(dark_ink[:, None, None], 1.0 - level, level)
    is_ink = ink >= threshold

    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    top, bottom = _extent(is_ink.any(2), rows, height)
    left, right = _extent(is_ink.any(1), cols, width)
    inside = ((rows >= top[:, None]) & (rows < bottom[:, None]))[:, :, None] & (
        (cols >= left[:, None]) & (cols < right[:, None])
    )[:, None, :]
    weight = ink * inside
    mass = weight.sum((1, 2)).clamp_min(1e-6)
    centre_y = (weight.sum(2) * (rows + 0.5)).sum(1) / mass
    centre_x = (weight.sum(1) * (cols + 0.5)).sum(1) / mass
    scale = box / torch.maximum(bottom - top, right - left).clamp_min(1).float()

    # The ground is the majority of the pixels: each channel's median.
    ground = images.flatten(2).median(dim=2).values[:, :, None, None]

    # Output pixel p (continuous coordinates, centre at size / 2) shows input point
    # centre + (p - size / 2) / scale; k x k samples per output pixel average out aliasing.
    steps = _SUPERSAMPLING
    points = (torch.arange(size * steps, device=device, dtype=images.dtype) + 0.5) / steps
    offsets = (points[None] - size / 2) / scale[:, None]
    grid_y = 2 * (centre_y[:, None] + offsets) / height - 1
    grid_x = 2 * (centre_x[:, None] + offsets) / width - 1
    grid = torch.stack(torch.broadcast_tensors(grid_x[:, None, :], grid_y[:, :, None]), dim=-1)
    digit = (images - ground) * inside[:, None]
    framed = F.grid_sample(digit, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    framed = F.avg_pool2d(framed, steps)
    framed = (framed + ground).clamp(0, 1)

    blank = span.flatten() < min_contrast
    if blank.any():
        resized = F.interpolate(
            images[blank], size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        framed[blank] = resized.clamp(0, 1)
    return framed


def _extent(
    present: torch.Tensor, positions: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """First and one-past-last position where ``present`` (``B x length``) holds."""
    first = torch.where(present, positions, length).amin(1)
    last = torch.where(present, positions, -1).amax(1) + 1
    return first.clamp_max(length - 1), torch.maximum(last, first + 1).clamp_max(length)


class CanonicalFraming(nn.Module):
    """:func:`canonical_frame` as a module, for ``nn.Sequential`` or a task's transforms.

    Args:
        size: height and width of the framed images.
        box: side of the square the ink's bounding box is scaled into; ``None``:
            MNIST's 20 pixels in 28 (``round(size * 20 / 28)``).
        threshold: ink level, as a fraction of each image's intensity range, that
            counts for the bounding box.
        min_contrast: images with a smaller intensity range are blank and only resized.
    """

    def __init__(
        self, size: int, box: int | None = None, threshold: float = 0.3, min_contrast: float = 0.05
    ) -> None:
        super().__init__()
        box = round(size * MNIST_BOX) if box is None else int(box)
        if not 1 <= box <= size:
            raise InputError(f"framing box must hold 1 to {size} pixels, got {box}")
        if not 0.0 < threshold < 1.0:
            raise InputError(f"framing threshold must lie in (0, 1), got {threshold}")
        self.size, self.box, self.threshold, self.min_contrast = size, box, threshold, min_contrast

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Frame ``B x C x H x W`` images in [0, 1]; returns ``B x C x size x size``."""
        return canonical_frame(images, self.size, self.box, self.threshold, self.min_contrast)

    def extra_repr(self) -> str:
        return f"size={self.size}, box={self.box}, threshold={self.threshold}"
