"""DepthFCN (small encoder-decoder) and PixelClassifier (per-pixel MLP head)."""

from __future__ import annotations

import pytest
import torch

from lightning_synth.nn import DepthFCN, PixelClassifier
from lightning_synth.nn.segmentation import normalize_depth


@pytest.mark.parametrize("size", [(37, 51), (61, 83), (16, 16)])
def test_fcn_keeps_any_image_size(size: tuple[int, int]) -> None:
    network = DepthFCN(widths=(4, 8, 8), out_features=6)
    depth = torch.rand(2, 1, *size) + 1
    features = network(depth)
    assert features.shape == (2, 6, *size)
    assert network.out_features == 6


def test_fcn_sees_depth_relative_to_the_person_so_distance_does_not_matter() -> None:
    torch.manual_seed(0)
    depth = torch.zeros(1, 1, 20, 24)
    depth[..., 4:16, 8:14] = 2.0 + 0.1 * torch.rand(12, 6)
    network = DepthFCN(widths=(4, 8), out_features=5).eval()
    farther = torch.where(depth > 0, depth + 1.5, depth)
    assert torch.allclose(network(depth), network(farther), atol=1e-5)
    assert normalize_depth(depth)[:, 1].sum() == 72  # the foreground mask channel


def test_fcn_rejects_rgb_input_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        DepthFCN()(torch.rand(1, 3, 16, 16))


def test_pixel_classifier_treats_every_pixel_alike() -> None:
    torch.manual_seed(0)
    head = PixelClassifier(7, num_classes=31, hidden=(12,))
    maps = torch.randn(2, 7, 5, 6)
    logits = head(maps)
    assert logits.shape == (2, 31, 5, 6)
    points = maps.movedim(1, -1).reshape(-1, 7)
    assert torch.allclose(head(points), logits.movedim(1, -1).reshape(-1, 31), atol=1e-6)
    assert PixelClassifier.pointwise
