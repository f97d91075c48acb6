"""Small convolutional backbones sized for digit-like images."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DigitConvNet", "feature_dim"]


class DigitConvNet(nn.Module):
    """Three conv blocks and a global average pool: ``B x C x H x W -> B x out_features``.

    Works at any input size >= 8 pixels (the pool removes the spatial size), so
    the same network fits 8x8 scikit-learn digits upsampled, 28x28 MNIST or
    32x32 SVHN.

    Args:
        in_channels: channels of the input images (1 gray, 3 colour).
        width: channels of the first block; later blocks double it.
        out_features: size of the feature vector.
        dropout: dropout before the last projection (0 disables it).
    """

    def __init__(
        self, in_channels: int = 3, width: int = 32, out_features: int = 128, dropout: float = 0.1
    ) -> None:
        super().__init__()
        widths = (width, width * 2, width * 4)
        blocks: list[nn.Module] = []
        channels = in_channels
        for index, block_width in enumerate(widths):
            blocks += [
                nn.Conv2d(channels, block_width, 3, padding=1, bias=False),
                nn.BatchNorm2d(block_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(block_width, block_width, 3, padding=1, bias=False),
                nn.BatchNorm2d(block_width),
                nn.ReLU(inplace=True),
            ]
            if index < len(widths) - 1:
                blocks.append(nn.MaxPool2d(2))
            channels = block_width
        self.conv = nn.Sequential(*blocks)
        self.project = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, out_features),
            nn.ReLU(inplace=True),
        )
        self.out_features = out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.conv(images))


@torch.no_grad()
def feature_dim(network: nn.Module, in_channels: int, image_size: int) -> int:
    """Length of the feature vector ``network`` returns for one image.

    Uses the ``out_features`` attribute when the network has one, otherwise runs
    a dummy image through it (in eval mode, so batch-norm statistics are untouched).

    Args:
        network: maps ``B x C x H x W`` images to ``B x D`` features.
        in_channels: channels of the dummy image.
        image_size: height and width of the dummy image.
    """
    declared = getattr(network, "out_features", None)
    if isinstance(declared, int):
        return declared
    was_training = network.training
    network.eval()
    try:
        probe = next(network.parameters(), torch.empty(0))
        dummy = torch.zeros(1, in_channels, image_size, image_size, device=probe.device)
        output = network(dummy)
    finally:
        network.train(was_training)
    if output.ndim != 2:
        raise ValueError(
            f"the feature network returns a tensor of shape {tuple(output.shape)}; it must return "
            "B x D features (end it with a pooling layer and nn.Flatten())"
        )
    return int(output.shape[1])
