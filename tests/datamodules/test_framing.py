"""Canonical framing: the same digit framed differently comes out the same."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_synth.datamodules.framing import CanonicalFraming, canonical_frame

# A "7" as pen segments in a unit square (x, y), y down; with the pen's width it stays
# inside the square, so a drawing's box holds the whole digit.
_SEVEN = [((0.2, 0.1), (0.8, 0.1)), ((0.8, 0.1), (0.35, 0.9))]


def _draw(
    size: int, left: float, top: float, width: float, height: float, pen: float = 0.08
) -> torch.Tensor:
    """The "7" drawn into ``width x height`` pixels at ``(left, top)`` of a ``size`` frame,
    light on dark, anti-aliased by drawing at 8x and averaging; ``pen`` is the pen's
    radius as a fraction of the drawing's longer side."""
    fine = 8
    coords = (torch.arange(size * fine) + 0.5) / fine
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    u, v = (x - left) / width, (y - top) / height  # unit-square coordinates
    ink = torch.zeros_like(u, dtype=torch.bool)
    for (x0, y0), (x1, y1) in _SEVEN:
        dx, dy = x1 - x0, y1 - y0
        t = (((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy)).clamp(0, 1)
        # distance measured in pixels of the longer side, so the pen scales with the digit
        dist = torch.hypot((u - x0 - t * dx) * width, (v - y0 - t * dy) * height)
        ink |= dist <= pen * max(width, height)
    return F.avg_pool2d(ink.float()[None, None], fine)[0]


def test_a_digit_framed_in_three_ways_comes_out_the_same() -> None:
    mnist_like = _draw(28, left=6.5, top=4.0, width=15.0, height=20.0)  # MNIST-like
    tight = _draw(16, left=2.0, top=0.0, width=12.0, height=16.0)  # fills a 16 x 16 frame
    small_corner = _draw(40, left=3.0, top=2.0, width=9.0, height=12.0)  # small, off centre
    framed = [canonical_frame(image[None], 28)[0] for image in (mnist_like, tight, small_corner)]
    before = (F.interpolate(small_corner[None], size=28, mode="area")[0] - mnist_like).abs().mean()
    for other in framed[1:]:
        difference = (other - framed[0]).abs().mean()
        assert difference < 0.03, difference
        assert difference < before / 4
    # the longer side fills MNIST's 20-pixel box, and the ink's centre of mass is central
    rows = (framed[1][0] > 0.3).any(1).nonzero().flatten()
    assert rows[-1] - rows[0] + 1 in (20, 21)
    ys, xs = torch.meshgrid(torch.arange(28) + 0.5, torch.arange(28) + 0.5, indexing="ij")
    mass = framed[1][0].sum()
    assert abs(float((framed[1][0] * ys).sum() / mass) - 14) < 0.5
    assert abs(float((framed[1][0] * xs).sum() / mass) - 14) < 0.5


def test_aspect_ratio_is_kept() -> None:
    bar = torch.zeros(1, 1, 30, 30)
    bar[0, 0, 12:18, 3:27] = 1.0  # 24 wide, 6 high
    framed = canonical_frame(bar, 28, box=20)[0, 0]
    # each pixel holds the share of it the bar covers, so a profile's sum is the extent
    assert float(framed.amax(0).sum()) == pytest.approx(20, abs=0.3)
    assert float(framed.amax(1).sum()) == pytest.approx(5, abs=0.3)
    tall = canonical_frame(bar.transpose(2, 3), 28, box=20)[0, 0]
    assert float(tall.amax(1).sum()) == pytest.approx(20, abs=0.3)


def test_dark_ink_on_light_ground_frames_like_light_on_dark() -> None:
    digit = _draw(24, left=1.0, top=3.0, width=9.0, height=12.0)
    light_on_dark = canonical_frame(digit[None], 28)
    dark_on_light = canonical_frame(1.0 - digit[None], 28)
    torch.testing.assert_close(dark_on_light, 1.0 - light_on_dark, atol=1e-5, rtol=0)
    assert dark_on_light.mean() > 0.5  # the ground stays light


def test_colour_images_keep_their_colours_and_ground() -> None:
    digit = _draw(20, left=2.0, top=2.0, width=8.0, height=10.0)[0]
    ground, ink = torch.tensor([0.9, 0.8, 0.1]), torch.tensor([0.1, 0.2, 0.7])
    colour = ground[:, None, None] + (ink - ground)[:, None, None] * digit
    framed = canonical_frame(colour[None], 28)[0]
    assert framed.shape == (3, 28, 28)
    torch.testing.assert_close(framed[:, 0, 0], ground, atol=1e-5, rtol=0)
    strongest = framed[:, 14, :].sum(0).argmin()  # darkest pixel of the middle row
    assert (framed[:, 14, strongest] - ink).abs().max() < 0.2


def test_blank_and_flat_images_do_not_crash() -> None:
    blank = torch.zeros(2, 1, 16, 16)
    blank[1] = 0.5
    framed = canonical_frame(blank, 28)
    assert framed.shape == (2, 1, 28, 28)
    assert torch.equal(framed[0], torch.zeros(1, 28, 28))
    torch.testing.assert_close(framed[1], torch.full((1, 28, 28), 0.5))
    single_dot = torch.zeros(1, 1, 9, 9)
    single_dot[0, 0, 0, 8] = 1.0
    assert torch.isfinite(canonical_frame(single_dot, 28)).all()
    assert canonical_frame(torch.zeros(0, 1, 8, 8), 28).shape == (0, 1, 28, 28)


def test_a_batch_frames_each_image_by_itself() -> None:
    images = torch.stack(
        [
            _draw(28, left=1.0, top=1.0, width=9.0, height=12.0),
            _draw(28, left=10.0, top=6.0, width=15.0, height=20.0),
        ]
    )
    together = CanonicalFraming(28)(images)
    alone = torch.cat([canonical_frame(image[None], 28) for image in images])
    torch.testing.assert_close(together, alone)
    assert (together[0] - together[1]).abs().mean() < 0.03


def test_bad_framing_settings_name_the_setting() -> None:
    with pytest.raises(ValueError, match="box"):
        CanonicalFraming(28, box=30)
    with pytest.raises(ValueError, match="threshold"):
        CanonicalFraming(28, threshold=1.5)
    with pytest.raises(ValueError, match="B x C x H x W"):
        canonical_frame(torch.zeros(8, 8), 28)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_framing_on_a_gpu_gives_the_images_of_the_cpu() -> None:
    images = torch.stack([_draw(28, 2.0, 3.0, 9.0, 12.0), 1 - _draw(28, 9.0, 5.0, 15.0, 20.0)])
    on_gpu = canonical_frame(images.cuda(), 28)
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), canonical_frame(images, 28), atol=1e-4, rtol=0)
