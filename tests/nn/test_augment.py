"""RandomAffine: per-image random warps for consistency training."""

from __future__ import annotations

import pytest
import torch

from lightning_synth.nn import RandomAffine


def _digit_like(n: int = 4, size: int = 16) -> torch.Tensor:
    images = torch.zeros(n, 1, size, size)
    images[:, :, 5:11, 7:9] = 1.0
    return images


def test_no_rotation_shift_or_zoom_is_the_identity() -> None:
    images = torch.rand(3, 2, 12, 12)
    warp = RandomAffine(degrees=0.0, translate=0.0, scale=(1.0, 1.0))
    assert torch.allclose(warp(images), images, atol=1e-5)


def test_each_image_gets_its_own_warp_and_eval_mode_is_the_identity() -> None:
    torch.manual_seed(0)
    images = _digit_like()
    warp = RandomAffine(degrees=20.0, translate=0.1)
    warped = warp(images)
    assert warped.shape == images.shape
    assert not torch.allclose(warped[0], warped[1])  # same input, different warps
    # A small warp keeps the stroke inside the image: about the same ink.
    assert torch.allclose(warped.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)), rtol=0.3)
    assert torch.equal(warp.eval()(images), images)


def test_pixels_from_outside_take_the_fill_value() -> None:
    white = torch.ones(2, 1, 8, 8)
    torch.manual_seed(1)
    assert torch.allclose(RandomAffine(degrees=30.0, translate=0.2, fill=1.0)(white), white)
    assert RandomAffine(degrees=30.0, translate=0.2, fill=0.0)(white).min() < 0.5


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="degrees"):
        RandomAffine(degrees=-1.0)
    with pytest.raises(ValueError, match="scale"):
        RandomAffine(scale=(1.2, 0.8))
