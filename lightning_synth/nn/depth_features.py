"""Depth-comparison features (Shotton et al., CVPR 2011), vectorised with ``grid_sample``.

For a pixel ``x`` of a depth image ``d`` and an offset pair ``(u, v)``::

    f(d, x) = d(x + u / d(x)) - d(x + v / d(x))

Dividing the offsets by the pixel's own depth makes the feature invariant to the
subject's distance: a probe ``u`` pixel·metres away lands on the same point of a body
whether it stands 1.5 m or 4 m from the camera. Probes that land on the background
(depth 0) or outside the image read a large constant (``background``, 10 m by default).

All offset pairs are evaluated at once: the frames of a batch are stacked into one image
and one ``grid_sample`` call reads the probes of many pixels at a time. With ``foreground_only`` (the default) only pixels with a depth
reading are evaluated, which is what makes the features fast: a person covers about a
tenth of a 240 x 320 Kinect frame.

Offsets are in pixel·metres *at a 320-pixel-wide image* (the Kinect's QVGA resolution
with its ~58 degree field of view): at another width they scale with the width, so the
same offsets (and a trained network) reach the same distance on the body at any
resolution.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError

__all__ = ["DepthComparisonFeatures", "REFERENCE_WIDTH"]

#: Image width (pixels) at which offsets are given; other widths scale them.
REFERENCE_WIDTH: int = 320
_CHUNK_PROBES = 1 << 20


def _as_depth(depth: torch.Tensor) -> torch.Tensor:
    """``B x H x W`` depth from ``B x 1 x H x W`` or ``B x H x W`` input."""
    if depth.ndim == 4 and depth.shape[1] == 1:
        return depth[:, 0]
    if depth.ndim == 3:
        return depth
    raise ValueError(
        f"expected depth images of shape B x 1 x H x W (metres, 0 = no reading), "
        f"got {tuple(depth.shape)}"
    )


class DepthComparisonFeatures(nn.Module):
    """Shotton's depth-comparison features: ``B x 1 x H x W`` depth -> ``B x F x H x W``.

    Background pixels get all-zero features. The paper fed these features to
    randomised decision forests; here a per-pixel MLP
    (:class:`~lightning_synth.nn.PixelClassifier`) takes their place, a differentiable
    stand-in that trains with the rest of the framework (and with DANN).

    Args:
        num_features: number of offset pairs ``(u, v)``, one feature each.
        max_offset: largest offset component, in pixel·metres at a 320-pixel-wide image
            (200 reaches about 0.7 m across the body with a Kinect's field of view: the
            context that tells, e.g., an arm from a leg).
        background: depth in metres that probes read on the background or outside the
            image.
        learnable: make the offsets an ``nn.Parameter`` trained by back-propagation
            (needs ``interpolation: bilinear``); otherwise they stay fixed (a buffer).
        interpolation: how a probe reads the depth: ``nearest`` (the paper's pixel
            lookup, fastest) or ``bilinear`` (smooth in the offsets); ``None`` picks
            ``bilinear`` for learnable offsets and ``nearest`` otherwise.
        foreground_only: evaluate the features only where the depth is above 0 (far
            faster); ``False`` evaluates every pixel.
        seed: seed of the random offsets.
    """

    #: The task may ask for the features of foreground pixels only (:meth:`foreground_features`).
    sparse: ClassVar[bool] = True

    def __init__(
        self,
        num_features: int = 128,
        max_offset: float = 200.0,
        background: float = 10.0,
        learnable: bool = False,
        interpolation: Literal["nearest", "bilinear"] | None = None,
        foreground_only: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise InputError(f"num_features must be positive, got {num_features}")
        if max_offset <= 0 or background <= 0:
            raise InputError("max_offset and background must be positive")
        if interpolation is None:
            interpolation = "bilinear" if learnable else "nearest"
        if learnable and interpolation == "nearest":
            raise InputError(
                "learnable offsets need interpolation='bilinear': nearest-pixel probes "
                "have no gradient with respect to the offsets"
            )
        self.num_features = int(num_features)
        self.out_features = self.num_features
        self.max_offset = float(max_offset)
        self.background = float(background)
        self.interpolation = interpolation
        self.foreground_only = foreground_only
        generator = torch.Generator().manual_seed(seed)
        # offsets[k] is (u, v) of feature k; the last axis is (along x, along y).
        offsets = (2 * torch.rand(self.num_features, 2, 2, generator=generator) - 1) * max_offset
        if learnable:
            self.offsets = nn.Parameter(offsets)
        else:
            self.register_buffer("offsets", offsets)

    def extra_repr(self) -> str:
        learnable = isinstance(self.offsets, nn.Parameter)
        return (
            f"num_features={self.num_features}, max_offset={self.max_offset}, "
            f"background={self.background}, learnable={learnable}, "
            f"interpolation={self.interpolation!r}, foreground_only={self.foreground_only}"
        )

    def probe(self, depth: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Features ``N x F`` of the pixels ``index`` (``N`` flat positions in ``B * H * W``).

        The frames are stacked into one tall image, separated by enough background rows
        that no probe reaches a neighbouring frame, so ``grid_sample`` serves the whole
        batch (in chunks of about a million probes) without padding every frame to the
        largest foreground.

        Args:
            depth: ``B x H x W`` metres, 0 on the background.
            index: pixels to evaluate, positions in the flattened batch.
        """
        batch, height, width = depth.shape
        filled = torch.where(depth > 0, depth, torch.full_like(depth, self.background))
        centre = filled.flatten().gather(0, index)  # background pixels read the constant
        frame = torch.div(index, height * width, rounding_mode="floor")
        within = index - frame * (height * width)
        xs = (within % width).to(depth.dtype)
        ys = torch.div(within, width, rounding_mode="floor").to(depth.dtype)
        # An offset o (pixel·m at REFERENCE_WIDTH) moves o * width / (REFERENCE_WIDTH * d)
        # pixels; rows between frames must outreach the largest vertical move. To bound
        # them, pixels nearer than reach / (4 H) (0.21 m with the defaults at 4:3, half a
        # Kinect's minimum range) have their offsets scaled as if they were that far.
        reach = float(self.offsets.detach()[..., 1].abs().max()) * width / REFERENCE_WIDTH
        centre = centre.clamp_min(reach / (4 * height + 1))
        nearest = float(centre.min()) if len(centre) else self.background
        gap = int(math.ceil(reach / nearest)) + 1
        tall = F.pad(filled - self.background, (0, 0, 0, gap)).reshape(1, 1, -1, width)
        rows = tall.shape[2]
        ys = ys + frame.to(depth.dtype) * (height + gap)
        inverse = 2.0 / (REFERENCE_WIDTH * centre)  # N
        aspect = torch.tensor([1.0, width / rows], device=depth.device, dtype=depth.dtype)
        # 2F x 2: the F offsets u, then the F offsets v.
        offsets = self.offsets.to(depth.dtype).transpose(0, 1).reshape(-1, 2) * aspect
        # Pixel centres in grid_sample's [-1, 1] coordinates (align_corners=False); a pixel
        # move of p is 2 p / width grid units along x and 2 p / rows along y.
        base = torch.stack([(2 * xs + 1) / width - 1, (2 * ys + 1) / rows - 1], dim=-1)
        # The N x 2F x 2 grid is the largest tensor here: build and sample it in chunks of
        # about 1M probes, which stay in cache instead of page-faulting a fresh buffer.
        chunk = max(1, _CHUNK_PROBES // len(offsets))
        features = []
        for start in range(0, len(index), chunk):
            part = slice(start, start + chunk)
            grid = torch.addcmul(base[part, None, :], inverse[part, None, None], offsets)
            # Sample (filled - background) with zero padding: outside the image reads 0,
            # i.e. the background depth (the constant cancels in the difference).
            probes = F.grid_sample(
                tall, grid[None], mode=self.interpolation, padding_mode="zeros", align_corners=False
            )[0, 0]  # chunk x 2F
            features.append(probes[:, : self.num_features] - probes[:, self.num_features :])
        if not features:
            return depth.new_zeros(0, self.num_features)
        return features[0] if len(features) == 1 else torch.cat(features)

    def foreground_features(self, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of the foreground pixels only: ``N x F`` and their flat indices ``N``.

        The indices point into ``B * H * W`` (frame-major), so
        ``out.view(B * H * W, F).index_copy(0, index, features)`` places them.

        Args:
            depth: ``B x 1 x H x W`` metres, 0 on the background.
        """
        depth = _as_depth(depth)
        index = (depth.flatten() > 0).nonzero()[:, 0]
        return self.probe(depth, index), index

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        """``B x F x H x W`` features (channels-last in memory), zero on the background.

        Args:
            depth: ``B x 1 x H x W`` metres, 0 on the background.
        """
        plain = _as_depth(depth)
        batch, height, width = plain.shape
        if self.foreground_only:
            features, index = self.foreground_features(plain)
            out = features.new_zeros(batch * height * width, self.num_features)
            out = out.index_copy(0, index, features)
        else:
            index = torch.arange(batch * height * width, device=plain.device)
            out = self.probe(plain, index) * (plain > 0).flatten()[:, None]
        return out.view(batch, height, width, self.num_features).permute(0, 3, 1, 2)
