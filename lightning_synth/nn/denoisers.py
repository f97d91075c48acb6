"""Denoising networks (plain ``nn.Module``s) and tiled inference for images of any size.

Both networks predict the noise and subtract it (residual learning, Zhang et al. 2017),
and expose the feature maps in their middle through :meth:`forward_with_features`, for
the adaptation components that align rendered and real features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError

__all__ = [
    "DnCNN",
    "UNetDenoiser",
    "tiled",
    "pad_to_multiple",
    "neighbor_indices",
    "neighbor2neighbor_loss",
    "noise2self_loss",
]


def _conv(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


class DnCNN(nn.Module):
    """DnCNN (Zhang et al. 2017, "Beyond a Gaussian denoiser"): conv-ReLU, ``depth - 2``
    conv-BN-ReLU layers and a conv that predicts the noise, which is subtracted.

    The paper's network has ``depth`` 17 (20 for blind colour denoising) and ``width`` 64;
    the defaults are smaller, so that a CPU trains it in minutes.

    Args:
        in_channels: 1 (gray) or 3 (colour).
        depth: number of convolutions (at least 3).
        width: channels of the hidden layers.
        batch_norm: batch normalisation in the middle layers (the paper's choice).
        feature_layer: the hidden layer whose output :meth:`forward_with_features`
            returns (1-based; ``None``: the middle one).
    """

    #: Input sides need not be a multiple of anything.
    size_multiple: int = 1

    def __init__(
        self,
        in_channels: int = 3,
        depth: int = 10,
        width: int = 48,
        batch_norm: bool = True,
        feature_layer: int | None = None,
    ) -> None:
        super().__init__()
        if depth < 3 or width < 1:
            raise InputError(f"depth must be at least 3 and width positive, got {depth}, {width}")
        feature_layer = depth // 2 if feature_layer is None else feature_layer
        if not 1 <= feature_layer <= depth - 1:
            raise InputError(f"feature_layer must lie in 1..{depth - 1}, got {feature_layer}")
        layers = [nn.Sequential(*_conv(in_channels, width, batch_norm=False))]
        layers += [nn.Sequential(*_conv(width, width, batch_norm)) for _ in range(depth - 2)]
        self.body = nn.ModuleList(layers)
        self.head = nn.Conv2d(width, in_channels, 3, padding=1)
        self.feature_layer = feature_layer
        self.feature_dim = width

    def forward_with_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoised images and the ``B x width x H x W`` features of ``feature_layer``."""
        x = images
        features = images
        for index, layer in enumerate(self.body, start=1):
            x = layer(x)
            if index == self.feature_layer:
                features = x
        return images - self.head(x), features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The denoised ``images`` (``B x C x H x W``)."""
        return self.forward_with_features(images)[0]


class _Block(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool) -> None:
        super().__init__(
            *_conv(in_channels, out_channels, batch_norm),
            *_conv(out_channels, out_channels, batch_norm),
        )


class UNetDenoiser(nn.Module):
    """A small U-Net (Ronneberger et al. 2015) that predicts the noise.

    Each level halves the resolution and doubles the channels, so the receptive field
    grows quickly at little cost: what spatially correlated camera noise (demosaicing,
    in-camera noise reduction, JPEG) needs. Inputs are padded to a multiple of
    ``2 ** levels`` inside :meth:`forward` and cropped back.

    Args:
        in_channels: 1 (gray) or 3 (colour).
        width: channels of the first level.
        levels: number of downsamplings.
        batch_norm: batch normalisation after each convolution.
    """

    def __init__(
        self, in_channels: int = 3, width: int = 32, levels: int = 2, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if levels < 1 or width < 1:
            raise InputError(f"levels and width must be positive, got {levels}, {width}")
        widths = [width * 2**level for level in range(levels + 1)]
        self.down = nn.ModuleList([_Block(in_channels, widths[0], batch_norm)])
        self.down.extend(_Block(widths[i], widths[i + 1], batch_norm) for i in range(levels))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(levels)
        )
        self.merge = nn.ModuleList(
            _Block(2 * widths[i], widths[i], batch_norm) for i in range(levels)
        )
        self.head = nn.Conv2d(widths[0], in_channels, 1)
        self.levels = levels
        self.size_multiple = 2**levels
        self.feature_dim = widths[-1]

    def forward_with_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoised images and the bottleneck's ``B x feature_dim x H' x W'`` features."""
        x, crop = pad_to_multiple(images, self.size_multiple)
        skips = []
        for index, block in enumerate(self.down):
            if index:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        features = x
        for level in reversed(range(self.levels)):
            x = self.up[level](x)
            x = self.merge[level](torch.cat([x, skips[level]], dim=1))
        noise = self.head(x)[..., : crop[0], : crop[1]]
        return images - noise, features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The denoised ``images`` (``B x C x H x W``, any size)."""
        return self.forward_with_features(images)[0]


def pad_to_multiple(images: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``images`` mirrored at the bottom and right up to a multiple of ``multiple``, and the
    original ``(H, W)`` to crop back to.

    Args:
        images: ``B x C x H x W``.
        multiple: the sides' required divisor.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        # Reflection needs a pad smaller than the side; replicate covers tiny images.
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        images = F.pad(images, (0, pad_w, 0, pad_h), mode=mode)
    return images, (height, width)


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def tiled(
    function: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tile_size: int = 256,
    overlap: int = 32,
) -> torch.Tensor:
    """Apply an image-to-image ``function`` tile by tile and blend the overlaps.

    Memory stays bounded on large photographs. Each tile's pixels are weighted by a ramp
    that falls towards its borders within the overlap (the borders see the least context),
    so seams do not show. Images no larger than a tile go through whole.

    Args:
        function: ``B x C x h x w`` -> ``B x C' x h x w``.
        images: ``B x C x H x W``.
        tile_size: side of the square tiles.
        overlap: pixels shared by neighbouring tiles (less than ``tile_size``).
    """
    if not 0 <= overlap < tile_size:
        raise InputError(f"need 0 <= overlap < tile_size, got {overlap} and {tile_size}")
    height, width = images.shape[-2:]
    if height <= tile_size and width <= tile_size:
        return function(images)
    step = tile_size - overlap
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    ramp_h = _ramp(tile_h, overlap, images)
    ramp_w = _ramp(tile_w, overlap, images)
    weight = ramp_h[:, None] * ramp_w[None, :]
    out: torch.Tensor | None = None
    total = torch.zeros(height, width, dtype=weight.dtype, device=images.device)
    for top in _starts(height, tile_h, step):
        for left in _starts(width, tile_w, step):
            window = (..., slice(top, top + tile_h), slice(left, left + tile_w))
            result = function(images[window])
            if out is None:
                shape = (*result.shape[:2], height, width)
                out = torch.zeros(shape, dtype=torch.float32, device=images.device)
            out[window] += result.float() * weight
            total[window[1:]] += weight
    assert out is not None
    return (out / total).to(images.dtype if images.is_floating_point() else out.dtype)


def _ramp(length: int, overlap: int, like: torch.Tensor) -> torch.Tensor:
    """Weights along one side: rising over the first ``overlap`` pixels, falling over the
    last, 1 between, never 0."""
    position = torch.arange(length, dtype=torch.float32, device=like.device)
    distance = torch.minimum(position + 1, length - position)
    return (distance / max(overlap, 1)).clamp(max=1.0)


# -- self-supervised losses on noisy images alone ------------------------------------------------
#: In a 2 x 2 cell numbered [[0, 1], [2, 3]], the two neighbours of each position.
_CELL_NEIGHBOURS = ((1, 2), (0, 3), (0, 3), (1, 2))


def _cells(images: torch.Tensor) -> torch.Tensor:
    """``B x C x h x w x 4``: the 2 x 2 cells of ``images`` (an odd last row/column dropped)."""
    batch, channels, height, width = images.shape
    h, w = height // 2, width // 2
    cells = images[..., : 2 * h, : 2 * w].reshape(batch, channels, h, 2, w, 2)
    return cells.permute(0, 1, 2, 4, 3, 5).reshape(batch, channels, h, w, 4)


def _take(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The pixel ``index`` (``B x h x w``, 0-3) of each 2 x 2 cell: a half-size image."""
    cells = _cells(images)
    chosen = index[:, None, :, :, None].expand(*cells.shape[:-1], 1)
    return cells.gather(-1, chosen)[..., 0]


def neighbor_indices(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbor2Neighbor's random sub-sampler: in each 2 x 2 cell a random pixel and a
    random one of its two direct neighbours (``B x H/2 x W/2`` positions 0-3 each)."""
    batch, _, height, width = images.shape
    shape = (batch, height // 2, width // 2)
    first = torch.randint(4, shape, device=images.device)
    table = torch.tensor(_CELL_NEIGHBOURS, device=images.device)
    second = table[first, torch.randint(2, shape, device=images.device)]
    return first, second


def neighbor2neighbor_loss(
    network: Callable[[torch.Tensor], torch.Tensor],
    noisy: torch.Tensor,
    denoised: torch.Tensor,
    gamma: float = 1.0,
) -> torch.Tensor:
    """Neighbor2Neighbor (Huang et al., CVPR 2021) on noisy images without references.

    Two half-size images ``g1(y)``, ``g2(y)`` take neighbouring pixels of each 2 x 2 cell;
    their noise is independent where the noise is pixel-independent, so
    ``|f(g1(y)) - g2(y)|^2`` trains ``f`` towards the clean image. The regulariser
    ``gamma |f(g1(y)) - g2(y) - (g1(f(y)) - g2(f(y)))|^2`` makes up for the two halves'
    small offset.

    Args:
        network: the denoiser ``f``.
        noisy: ``B x C x H x W`` noisy images (at least 2 x 2).
        denoised: ``f(noisy)`` without gradient (the training step has it already).
        gamma: the regulariser's weight.
    """
    first, second = neighbor_indices(noisy)
    output = network(_take(noisy, first)).float()
    difference = output - _take(noisy, second).float()
    shift = (_take(denoised, first) - _take(denoised, second)).float()
    return difference.square().mean() + gamma * (difference - shift).square().mean()


def noise2self_loss(
    network: Callable[[torch.Tensor], torch.Tensor], noisy: torch.Tensor, stride: int = 4
) -> torch.Tensor:
    """Noise2Self (Batson & Royer, ICML 2019) with a grid mask, on noisy images alone.

    One pixel in ``stride x stride`` (a random phase) is replaced by the mean of its four
    neighbours; the network's output there must predict the noisy value it never saw,
    which, for pixel-independent noise, it can only do through the clean signal.

    Args:
        network: the denoiser.
        noisy: ``B x C x H x W`` noisy images.
        stride: the mask's grid spacing.
    """
    height, width = noisy.shape[-2:]
    phase = torch.randint(stride, (2,)).tolist()
    mask = torch.zeros(height, width, dtype=torch.bool, device=noisy.device)
    mask[phase[0] :: stride, phase[1] :: stride] = True
    channels = noisy.shape[1]
    kernel = torch.tensor(
        ((0.0, 0.25, 0.0), (0.25, 0.0, 0.25), (0.0, 0.25, 0.0)),
        dtype=noisy.dtype,
        device=noisy.device,
    )
    mode = "reflect" if min(height, width) > 1 else "replicate"
    around = F.conv2d(
        F.pad(noisy, (1, 1, 1, 1), mode=mode), kernel.expand(channels, 1, 3, 3), groups=channels
    )
    output = network(torch.where(mask, around, noisy)).float()
    return (output - noisy.float()).square()[..., mask].mean()
