"""DANN's networks: the paper's sizes, and heads that take vectors or feature maps."""

from __future__ import annotations

import pytest
import torch

from lightning_synth.nn import DomainClassifier, GaninDigitNet, MLPHead


def test_ganin_digit_net_has_the_papers_feature_sizes() -> None:
    net = GaninDigitNet(in_channels=1)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 768)  # 48 x 4 x 4
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 1200)  # 48 x 5 x 5
    with pytest.raises(ValueError, match="at least 16"):
        net(torch.rand(2, 1, 8, 8))


def test_heads_take_vectors_and_feature_maps_and_infer_their_input_size() -> None:
    head = MLPHead(None, 10, hidden=(16,))
    assert head(torch.rand(3, 7)).shape == (3, 10)
    domain = DomainClassifier(7, hidden=(5,))
    assert domain(torch.rand(3, 7)).shape == (3,)
    maps = torch.rand(3, 7, 4, 6)
    assert domain(maps).shape == (3, 4, 6)
    # per pixel, the head is the same MLP as for vectors
    pixel = maps[:, :, 2, 3]
    assert torch.allclose(domain(maps)[:, 2, 3], domain(pixel), atol=1e-6)
