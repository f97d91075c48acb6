"""Dense networks for depth images: a small encoder-decoder and a per-pixel classifier head.

Both keep the image size: a feature extractor maps ``B x 1 x H x W`` depth to
``B x D x H x W`` features, and :class:`PixelClassifier` maps those to
``B x K x H x W`` class logits, one prediction per pixel (a per-pixel MLP, i.e. a stack
of 1x1 convolutions). The extractors declare ``out_features`` (``D``), so heads and
tasks can size themselves without a dummy forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError

__all__ = ["DepthFCN", "PixelClassifier", "normalize_depth"]


def normalize_depth(depth: torch.Tensor) -> torch.Tensor:
    """``B x 2 x H x W``: depth minus each frame's mean foreground depth (0 on the
    background), and the foreground mask.

    Subtracting the mean makes the input independent of how far the person stands; the
    mask tells "at the mean depth" apart from "no reading".

    Args:
        depth: ``B x 1 x H x W`` metres, 0 on the background.
    """
    mask = (depth > 0).to(depth.dtype)
    count = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    mean = (depth * mask).sum(dim=(2, 3), keepdim=True) / count
    return torch.cat([(depth - mean) * mask, mask], dim=1)


def _block(in_channels: int, out_channels: int, convs: int, kernel: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(convs):
        channels = in_channels if index == 0 else out_channels
        layers += [
            nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class DepthFCN(nn.Module):
    """A small fully convolutional encoder-decoder (U-Net-like) for depth images.

    ``B x 1 x H x W -> B x out_features x H x W`` at any size (odd sizes included): the
    encoder halves the resolution ``len(widths) - 1`` times with max-pooling, the
    decoder upsamples bilinearly to each skip connection's exact size. To stay cheap on
    a CPU, the full resolution gets one 3x3 convolution on the way down and one 1x1
    convolution (fusing the upsampled context with it) on the way up; the 3x3 work is
    done at half resolution and below.

    Args:
        widths: channels of each resolution level, finest first.
        out_features: channels of the output feature map.
        normalize: feed the depth relative to each frame's mean foreground depth plus
            the foreground mask (see :func:`normalize_depth`) instead of raw metres.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 96),
        out_features: int = 32,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise InputError(f"widths needs at least two positive levels, got {widths}")
        self.normalize = normalize
        self.out_features = int(out_features)
        in_channels = 2 if normalize else 1
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            self.down.append(_block(in_channels, width, 2 if level else 1))
            in_channels = width
        self.up = nn.ModuleList()
        for level in range(len(widths) - 2, -1, -1):
            out = widths[level] if level else self.out_features
            kernel = 3 if level else 1
            self.up.append(_block(in_channels + widths[level], out, 1, kernel=kernel))
            in_channels = out

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        if depth.ndim != 4 or depth.shape[1] != 1:
            raise ValueError(f"expected depth images B x 1 x H x W, got {tuple(depth.shape)}")
        x = normalize_depth(depth) if self.normalize else depth
        skips = []
        for index, block in enumerate(self.down):
            if index:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


class PixelClassifier(nn.Module):
    """Per-pixel MLP head: ``B x D x H x W -> B x K x H x W``, or ``N x D -> N x K``.

    Linear layers act on the channel dimension (the same as 1x1 convolutions, but
    faster on channels-last features such as
    :class:`~lightning_synth.nn.DepthComparisonFeatures`'). Since it treats every pixel
    on its own, a task may feed it the foreground pixels only (``N x D``).

    Args:
        in_features: input channels ``D``.
        num_classes: output channels ``K`` (31 body parts).
        hidden: widths of the hidden layers (ReLU after each); empty for a linear head.
        dropout: dropout after each hidden layer (0 disables it).
    """

    #: Acts on each pixel alone, so ``N x D`` input (foreground pixels only) is allowed.
    pointwise: ClassVar[bool] = True

    def __init__(
        self,
        in_features: int = 128,
        num_classes: int = 31,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(in_features)
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        self.in_features = int(in_features)
        self.out_features = int(num_classes)

    @property
    def embedding_width(self) -> int:
        """Width of :meth:`embed`'s output: the last hidden layer's (the input's without one)."""
        linear = [layer for layer in self.layers if isinstance(layer, nn.Linear)]
        return linear[-1].in_features

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """``N x D`` pixels' last hidden activations ``N x E`` (the input without hidden layers)."""
        return self.layers[:-1](features)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """``N x E`` embeddings (from :meth:`embed`) to ``N x K`` logits."""
        return self.layers[-1](embedding)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:
            return self.layers(features)
        if features.ndim != 4:
            raise ValueError(
                f"expected N x D or B x D x H x W features, got {tuple(features.shape)}"
            )
        return self.layers(features.movedim(1, -1)).movedim(-1, 1)
