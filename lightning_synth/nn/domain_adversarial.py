"""The networks of DANN (Ganin et al., 2016): a small digit ConvNet, MLP heads, a domain classifier.

Heads act on the channel dimension (dim 1), so the same module takes ``B x D`` feature
vectors or ``B x D x H x W`` feature maps (then it is a stack of 1x1 convolutions and
gives one prediction per pixel): a dense task can reuse them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_synth.errors import InputError

__all__ = ["GaninDigitNet", "MLPHead", "DomainClassifier"]


class GaninDigitNet(nn.Module):
    """DANN's feature extractor for MNIST-sized digits: two 5x5 conv, ReLU, 2x2 max-pool blocks.

    ``B x C x 28 x 28 -> B x 768`` (``B x 1200`` at 32 x 32) with the paper's widths 32 and 48.

    Args:
        in_channels: channels of the input images.
        widths: output channels of the two convolutions.
        batch_norm: add batch normalisation after each convolution (not in the paper).
        dropout: dropout on the flattened features (0 disables it).
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 48),
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) != 2:
            raise InputError(f"widths must give the channels of the two convolutions, got {widths}")
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            layers.append(nn.Conv2d(channels, width, 5, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        layers.append(nn.Flatten())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] < 16 or images.shape[-2] < 16:
            raise ValueError(
                f"GaninDigitNet needs images of at least 16 x 16 pixels, got {tuple(images.shape)}"
            )
        return self.layers(images)


class MLPHead(nn.Module):
    """Fully connected layers with ReLU between them, applied along dim 1.

    ``B x D -> B x out_features``, or ``B x D x H x W -> B x out_features x H x W``.

    Args:
        in_features: input channels ``D``; ``None`` infers it on the first call.
        out_features: output channels (classes).
        hidden: widths of the hidden layers; empty for a linear head.
        dropout: dropout before each hidden layer's output goes on (0 disables it).
    """

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int = 10,
        hidden: Sequence[int] = (100, 100),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in (*hidden, out_features):
            layers.append(nn.Linear(width, size) if width is not None else nn.LazyLinear(size))
            layers += [nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            width = size
        self.layers = nn.Sequential(*layers[: -2 if dropout > 0 else -1])
        self.out_features = out_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:
            return self.layers(features)
        if features.ndim < 2:
            raise ValueError(f"expected B x D or B x D x ... features, got {tuple(features.shape)}")
        return self.layers(features.movedim(1, -1)).movedim(-1, 1)


class DomainClassifier(MLPHead):
    """Logit of "this sample is real" from features: ``B x D -> B``, ``B x D x H x W -> B x H x W``.

    Feature maps get one domain logit per pixel (a per-pixel domain loss); pool them first
    (e.g. ``nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())`` in the extractor) for one
    logit per image.

    Args:
        in_features: input channels ``D``; ``None`` infers it on the first call.
        hidden: widths of the hidden layers (the paper: one of 100 units for MNIST,
            1024-1024 for its larger nets).
        dropout: dropout after each hidden layer (0 disables it).
    """

    def __init__(
        self, in_features: int | None = None, hidden: Sequence[int] = (100,), dropout: float = 0.0
    ) -> None:
        super().__init__(in_features, 1, hidden, dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features).squeeze(1)
