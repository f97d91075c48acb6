"""The shared digit-style operations: per-image blur, binarisation, resolution; the styles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_synth.rendering.digit_style import (
    MNIST_BOX,
    STROKE_STYLES,
    binarize,
    gaussian_blur,
    low_resolution,
    low_resolution_side,
)


def _dots(batch: int, size: int = 21) -> torch.Tensor:
    images = torch.zeros(batch, size, size)
    images[:, size // 2, size // 2] = 1.0
    return images


def test_each_image_gets_its_own_blur() -> None:
    images = _dots(3)
    blurred = gaussian_blur(images, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.equal(blurred[0], images[0])  # sigma 0: untouched
    assert torch.allclose(blurred.sum((1, 2)), torch.ones(3), atol=1e-5)  # mass kept
    # The variance of the blurred dot is the kernel's, sigma ** 2, along each axis.
    positions = torch.arange(21, dtype=torch.float32) - 10
    variance = (blurred.sum(1) * positions**2).sum(1)
    assert variance[1:].tolist() == pytest.approx([1.0, 4.0], rel=0.02)
    # An image blurs the same in any batch.
    assert torch.allclose(gaussian_blur(images[2:], torch.tensor([2.0]))[0], blurred[2], atol=1e-6)


def test_binarize_leaves_images_without_a_threshold_grey() -> None:
    images = torch.linspace(0, 1, 2 * 16).view(2, 4, 4)
    out = binarize(images, torch.tensor([0.25, float("nan")]))
    assert set(out[0].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(out[0], (images[0] > 0.25).float())
    assert torch.equal(out[1], images[1])


def test_low_resolution_is_a_down_and_up_resize_per_image() -> None:
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = low_resolution(images, torch.tensor([0, 8, 14]))
    assert torch.equal(out[0], images[0])
    for k, side in ((1, 8), (2, 14)):
        small = F.interpolate(images[k : k + 1], size=(side, side), mode="area")
        expected = F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
        assert torch.allclose(out[k], expected[0].clamp(0, 1), atol=1e-6)
    assert float(out[1].std()) < float(images[1].std())  # detail lost


def test_low_resolution_side_keeps_the_digit_at_least_min_resolution_pixels() -> None:
    assert low_resolution_side(False, 0.5, 8, 28) == 0
    sides = [low_resolution_side(True, pick / 10, 8, 28) for pick in range(10)]
    assert min(sides) == 8 and max(sides) <= 27
    # A digit spanning half the frame goes no lower than 16 pixels.
    assert min(low_resolution_side(True, pick / 10, 8, 28, 0.5) for pick in range(10)) == 16
    assert low_resolution_side(True, 0.3, 8, 12, 0.5) == 0  # no room below the image size


def test_styles_say_where_their_ranges_come_from() -> None:
    mnist, varied = STROKE_STYLES["mnist"], STROKE_STYLES["varied"]
    assert mnist.fill[1] == MNIST_BOX and mnist.mass_centring == 1.0
    assert mnist.dark_on_light == 0.0 and mnist.binarize_fraction == 0.0
    # varied reaches both MNIST's box and crops that fill the frame, hairline to bold
    assert varied.fill[0] < MNIST_BOX < varied.fill[1] == 1.0
    assert varied.width[0] < mnist.width[0] and varied.binarize_fraction > 0
    assert varied.width[1] > mnist.width[1]
    changed = varied.with_overrides(fill=(0.9, 1.0), dark_on_light=None)
    assert changed.fill == (0.9, 1.0) and changed.dark_on_light == varied.dark_on_light
    with pytest.raises(ValueError, match="unknown style fields"):
        varied.with_overrides(polarity=1.0)
    with pytest.raises(ValueError, match="binarize_fraction"):
        varied.with_overrides(binarize_fraction=2.0)
