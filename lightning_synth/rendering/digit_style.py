"""What real digit sets differ in, as ranges a renderer draws from, and the batched
image operations both digit renderers share.

Real handwritten and printed digit sets were made in different ways, and a network
trained on one way meets the others as a domain gap. The ranges of the ``varied``
styles cover what is known of how common sets were made, from their documentation
(no evaluation images were looked at to choose them):

=================  ==========================================================================
set                how it was made (what the ranges must reach)
=================  ==========================================================================
MNIST              NIST digits size-normalised into a 20 x 20 box keeping their aspect,
                   anti-aliased (grey edges), centred by centre of mass in 28 x 28; light
                   strokes on a pure black ground (LeCun et al., MNIST page).
USPS               zip-code digits scaled to fill 16 x 16 keeping the aspect, grey from the
                   linear size normalisation; no margin (LeCun et al. 1989).
Semeion            1,593 digits scanned, stretched into a 16 x 16 box (aspect not kept), then
                   thresholded to 0 / 1: binary and tight (UCI description).
optdigits          scikit-learn's digits: NIST forms' 32 x 32 binary bitmaps, counted in
                   4 x 4 blocks into 8 x 8 images of 17 levels: binary strokes seen at a very
                   low resolution (UCI description).
NIST SD-19         binary 128 x 128 scans of hand-printed forms: bilevel, pens of every width.
scans, photos      dark ink on light paper that is not pure white; pencil is faint; scanner
                   and camera blur and noise; crops made by hand leave loose margins.
SVHN               house-number crops: the digit band fills about half to most of the
                   height, with neighbours cut by the border (Netzer et al. 2011).
=================  ==========================================================================

The ``mnist`` style of :class:`~lightning_synth.rendering.StrokeDigits` keeps the earlier
MNIST-only rendering (and the images it made); ``varied`` is the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "MNIST_BOX",
    "STROKE_STYLES",
    "StrokeStyle",
    "StrokeStyleName",
    "binarize",
    "gaussian_blur",
    "low_resolution",
    "low_resolution_side",
]

#: MNIST's framing: the digit's larger side fills 20 of the 28 pixels.
MNIST_BOX = 20 / 28
#: A stretched digit's shorter side grows by at most this factor, so a 1 stays a stroke.
MAX_FILL_STRETCH = 3.0

StrokeStyleName = Literal["varied", "mnist"]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class StrokeStyle:
    """Ranges of the appearance of :class:`~lightning_synth.rendering.StrokeDigits`.

    Args:
        fill: share of the frame the digit's longer side spans, pen included: the largest
            digits span ``fill[1]``, the others are shrunk by a factor drawn uniformly
            down to ``fill[0] / fill[1]``.
        stretch_fraction: share of digits whose shorter side is stretched to span as much
            as the longer one (aspect not kept, by at most 3x).
        mass_centring: share of digits moved so that their centre of mass is the frame's
            centre (the rest: their bounding box is centred), never past the border.
        width: range of pen widths, in pixels of a 28-pixel image.
        max_blur: largest Gaussian blur standard deviation, in pixels of a 28-pixel image
            (drawn as ``max_blur * u**2``: most samples sharp).
        binarize_fraction: share of digits thresholded to two levels (at 0.35-0.65 of
            the ink).
        low_res_fraction: share of digits brought down to a lower resolution and back up
            (bilinear), as a set stored small and resized for the network.
        max_background: largest level of the ground away from black (light on dark) or
            from white (dark on light), drawn as ``max_background * u**2``.
        min_contrast: smallest difference between ink and ground (at most what the
            ground leaves).
        dark_on_light: share of digits drawn dark on a light ground.
        max_noise: largest standard deviation of the added Gaussian pixel noise.
    """

    fill: tuple[float, float]
    stretch_fraction: float
    mass_centring: float
    width: tuple[float, float]
    max_blur: float
    binarize_fraction: float
    low_res_fraction: float
    max_background: float
    min_contrast: float
    dark_on_light: float
    max_noise: float

    def __post_init__(self) -> None:
        low, high = self.fill
        _check(
            0 < low <= high <= 1, f"fill must satisfy 0 < fill[0] <= fill[1] <= 1, got {self.fill}"
        )
        low, high = self.width
        _check(0 < low <= high, f"need 0 < min_width <= max_width, got {low} and {high}")
        for name in (
            "stretch_fraction",
            "mass_centring",
            "binarize_fraction",
            "low_res_fraction",
            "dark_on_light",
        ):
            value = getattr(self, name)
            _check(0 <= value <= 1, f"{name} must be in [0, 1], got {value}")
        _check(self.max_blur >= 0, f"max_blur must be >= 0, got {self.max_blur}")
        _check(
            0 <= self.max_background < 1,
            f"max_background must be in [0, 1), got {self.max_background}",
        )
        _check(
            0 < self.min_contrast <= 1, f"min_contrast must be in (0, 1], got {self.min_contrast}"
        )
        _check(0 <= self.max_noise <= 1, f"max_noise must be in [0, 1], got {self.max_noise}")

    def with_overrides(self, **overrides: object) -> StrokeStyle:
        """This style with the given fields replaced; ``None`` values keep the style's."""
        names = {field.name for field in fields(self)}
        unknown = sorted(set(overrides) - names)
        _check(not unknown, f"unknown style fields {unknown}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


#: The two named styles of :class:`~lightning_synth.rendering.StrokeDigits`.
STROKE_STYLES: dict[str, StrokeStyle] = {
    # The earlier renderer, made for MNIST alone: its 20-pixel box (shrunk by up to 15 %),
    # centre of mass, 2-3.5 px pens, grey anti-aliased edges, pure black ground.
    "mnist": StrokeStyle(
        fill=(0.85 * MNIST_BOX, MNIST_BOX),
        stretch_fraction=0.0,
        mass_centring=1.0,
        width=(2.0, 3.5),
        max_blur=0.0,
        binarize_fraction=0.0,
        low_res_fraction=0.0,
        max_background=0.0,
        min_contrast=1.0,
        dark_on_light=0.0,
        max_noise=0.0,
    ),
    "varied": StrokeStyle(
        # From loose hand-made crops (about half the frame) through MNIST's 20/28 to
        # USPS's and Semeion's digits that fill the frame.
        fill=(0.55, 1.0),
        # Semeion-like sets stretch each digit into the whole box; most keep the aspect.
        stretch_fraction=0.2,
        # MNIST centres by centre of mass; sets scaled to fill centre the box.
        mass_centring=0.5,
        # A hairline pen (1 px) to felt-tip markers on forms (5 px, a fifth of a tight
        # digit's height); MNIST's strokes lie in the middle of the range.
        width=(1.0, 5.0),
        # Scanner and camera blur, and digits scaled down from larger scans.
        max_blur=1.2,
        # Bilevel sets: NIST SD-19 scans, Semeion, optdigits' bitmaps.
        binarize_fraction=0.2,
        # Sets stored at 8 (optdigits) or 16 (USPS, Semeion) pixels, resized up.
        low_res_fraction=0.3,
        # Paper is not pure white; most curated sets have a pure ground, hence u**2.
        max_background=0.25,
        # Pencil and faint scans, down to 0.6 of the full range.
        min_contrast=0.6,
        # Digit sets as distributed store light ink on a dark ground (MNIST, USPS,
        # Semeion, optdigits). Rendering a share dark on light adds a mode the real side
        # lacks, which adversarial alignment pulls against (partial domain adaptation,
        # Cao et al. 2018): in a 300-step probe, DomainAdversarial + RealSampleTerms
        # collapsed on MNIST's training pool with 30 % dark renders, not without. For
        # dark-on-light real digits (photographs, scans of paper) set dark_on_light: 1.
        dark_on_light=0.0,
        # Scanner and camera noise; curated sets are clean, so up to 0.04 only.
        max_noise=0.04,
    ),
}


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Blur each image of ``B x H x W`` by its own Gaussian (``sigmas``: ``B``, pixels).

    A separable, zero-padded convolution (the ground of the ink maps it is used on is 0);
    a sigma of 0 leaves its image unchanged.

    Args:
        images: ``B x H x W`` float images.
        sigmas: ``B`` standard deviations in pixels, ``>= 0``.
    """
    if len(images) == 0 or float(sigmas.max()) <= 0:
        return images
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    safe = sigmas.to(images).clamp_min(1e-3)[:, None]
    kernels = torch.exp(-0.5 * (offsets[None] / safe) ** 2)
    kernels = kernels / kernels.sum(1, keepdim=True)
    identity = (offsets == 0).to(images.dtype).expand_as(kernels)
    kernels = torch.where(sigmas.to(images.device)[:, None] > 0, kernels, identity)
    batch = len(images)
    rows = F.conv2d(images[None], kernels[:, None, None, :], padding=(0, radius), groups=batch)
    both = F.conv2d(rows, kernels[:, None, :, None], padding=(radius, 0), groups=batch)
    return both[0]


def binarize(images: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``1`` where an image of ``B x H x W`` exceeds its threshold, else ``0``; images
    whose threshold is NaN are left as they are.

    Args:
        images: ``B x H x W`` ink maps in [0, 1].
        thresholds: ``B`` thresholds, NaN for images to keep grey.
    """
    thresholds = thresholds.to(images)[:, None, None]
    binary = (images > thresholds).to(images.dtype)
    return torch.where(thresholds.isnan(), images, binary)


def low_resolution(images: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """Bring each image of ``B x C x H x W`` down to ``sides[b]`` pixels square (area
    averaging) and back up to ``H x W`` (bilinear), as a set stored small looks once a
    DataModule resizes it; ``0`` keeps an image as it is.

    Args:
        images: ``B x C x H x W`` float images.
        sides: ``B`` integer sides, 0 for images to keep.
    """
    out = images.clone()
    height, width = images.shape[-2:]
    for side in sorted({int(s) for s in sides.tolist()} - {0}):
        members = (sides == side).nonzero().flatten().to(images.device)
        small = F.interpolate(images[members], size=(side, side), mode="area")
        out[members] = F.interpolate(
            small, size=(height, width), mode="bilinear", align_corners=False
        ).clamp(0, 1)
    return out


def low_resolution_side(
    chosen: bool, pick: float, min_resolution: int, image_size: int, digit_share: float = 1.0
) -> int:
    """The side a sample is brought down to (0: kept at ``image_size``).

    Sides are drawn uniformly (by ``pick`` in [0, 1)) from the smallest at which the
    digit's longer side still spans ``min_resolution`` pixels up to ``image_size``: a set
    stored at 8 pixels (scikit-learn's digits) fills those 8 pixels with its digit, so a
    digit spanning half the frame goes no lower than 16.

    Args:
        chosen: whether the sample is brought down at all.
        pick: a uniform draw in [0, 1) that picks the side.
        min_resolution: fewest pixels the digit's longer side keeps.
        image_size: the image's side.
        digit_share: share of the image's side the digit's longer side spans.
    """
    smallest = math.ceil(min_resolution / max(digit_share, 1e-3) - 1e-6)
    if not chosen or smallest >= image_size:
        return 0
    return smallest + int(pick * (image_size - smallest))
