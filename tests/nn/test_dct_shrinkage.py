"""The learned DCT shrinkage: an exact transform, and thresholds that learn to denoise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_synth.errors import InputError
from lightning_synth.nn.dct_shrinkage import DCTShrinkage, dct_basis


def test_dct_basis_is_orthonormal() -> None:
    basis = dct_basis(8).reshape(64, 64)
    assert torch.allclose(basis @ basis.T, torch.eye(64), atol=1e-5)
    assert torch.allclose(basis[0], torch.full((64,), 1 / 8))  # the constant comes first


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(5, 6), (37, 45)])
def test_vanishing_thresholds_give_the_image_back(channels: int, size: tuple[int, int]) -> None:
    model = DCTShrinkage(in_channels=channels, block=8, stages=2)
    with torch.no_grad():
        model.log_threshold.fill_(-40.0)
        model.log_softness.fill_(-40.0)
    images = torch.rand(2, channels, *size, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model(images), images, atol=1e-5)


def test_a_huge_threshold_keeps_only_each_windows_mean() -> None:
    model = DCTShrinkage(in_channels=1, block=4, stages=1, threshold=100.0)
    images = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    padded = F.pad(images, (3, 3, 3, 3), mode="reflect")
    # Every window keeps its mean; each pixel averages the means of the 16 windows over it.
    expected = F.avg_pool2d(F.avg_pool2d(padded, 4, stride=1), 4, stride=1)
    assert torch.allclose(model(images), expected, atol=1e-5)


def _noisy_pairs(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth colour images (low frequencies) under white noise of sigma 0.05."""
    low = torch.rand(8, 3, 6, 6, generator=generator)
    clean = F.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    return clean + 0.05 * torch.randn(clean.shape, generator=generator), clean


def test_thresholds_learn_to_denoise() -> None:
    torch.manual_seed(0)
    model = DCTShrinkage(block=4, stages=1, threshold=0.01)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        noisy, clean = _noisy_pairs(generator)
        loss = F.mse_loss(model(noisy), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    noisy, clean = _noisy_pairs(torch.Generator().manual_seed(99))
    with torch.no_grad():
        gain = 10 * torch.log10(F.mse_loss(noisy, clean) / F.mse_loss(model(noisy), clean))
    assert gain > 4.0, f"only {gain:.2f} dB"


def test_bad_shapes_and_settings_say_what_to_pass() -> None:
    with pytest.raises(InputError, match="B x 3 x H x W"):
        DCTShrinkage()(torch.rand(1, 1, 16, 16))
    with pytest.raises(InputError, match="1 or 3 channels"):
        DCTShrinkage(in_channels=2)
    with pytest.raises(InputError, match="positive threshold"):
        DCTShrinkage(threshold=0.0)
