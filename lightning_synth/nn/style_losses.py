"""Losses of neural style transfer (Gatys et al., 2016): content, Gram-matrix style.

Both are *relative* squared errors, ``||F - P||^2 / ||P||^2`` per layer, so that their
size does not depend on the feature network's activation scale (ImageNet VGG19,
random weights, or a network of your own) nor on the image size: one ``style_weight``
means the same trade-off for every network. Gatys et al.'s absolute sums need a new
``alpha / beta`` for each network and resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["gram_matrix", "relative_squared_error", "content_loss", "style_loss"]


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel correlations ``F F^T / (H W)`` of each image: ``B x C x H x W -> B x C x C``.

    Divided by the number of positions, so images of different sizes compare. Computed
    in float32 (or float64) even under mixed precision.

    Args:
        features: activations of one layer.
    """
    if features.ndim != 4:
        raise ValueError(f"expected B x C x H x W features, got shape {tuple(features.shape)}")
    flat = features.flatten(2)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    with torch.autocast(device_type=flat.device.type, enabled=False):
        return flat @ flat.transpose(1, 2) / flat.shape[-1]


def relative_squared_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||value - target||^2 / ||target||^2`` per image: a ``B`` tensor.

    Args:
        value: ``B x ...``.
        target: same shape as ``value``, or without the batch dimension (shared by all).
    """
    value = value.float() if value.dtype not in (torch.float32, torch.float64) else value
    target = target.to(value.dtype).expand_as(value)
    error = (value - target).flatten(1).square().sum(dim=1)
    scale = target.flatten(1).square().sum(dim=1).clamp(min=torch.finfo(value.dtype).tiny)
    return error / scale


def content_loss(
    features: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    layers: Sequence[str],
) -> torch.Tensor:
    """Sum over ``layers`` of the relative squared error of the activations, per image.

    Args:
        features: activations of the images being optimised, by layer.
        targets: activations of the content images (same batch size), by layer.
        layers: which layers count.
    """
    return torch.stack([relative_squared_error(features[k], targets[k]) for k in layers]).sum(0)


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layers: Sequence[str],
    layer_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Weighted mean over ``layers`` of the relative squared error of Gram matrices, per image.

    Args:
        features: activations of the images being optimised, by layer.
        target_grams: ``C x C`` (shared) or ``B x C x C`` style Gram matrices, by layer.
        layers: which layers count.
        layer_weights: one weight per layer (normalised to sum 1); equal by default.
    """
    weights = [1.0] * len(layers) if layer_weights is None else list(layer_weights)
    if len(weights) != len(layers):
        raise ValueError(f"{len(weights)} layer weights for {len(layers)} style layers")
    total = sum(weights)
    terms = [
        (weight / total) * relative_squared_error(gram_matrix(features[k]), target_grams[k])
        for k, weight in zip(layers, weights, strict=True)
    ]
    return torch.stack(terms).sum(0)
