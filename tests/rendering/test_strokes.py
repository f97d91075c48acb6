"""StrokeDigits: hand-drawn and Hershey pen paths, deterministic per index, MNIST-framed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_synth.batch import DOMAIN, IMAGE, LABEL, RENDERED
from lightning_synth.datamodules import MixedDomainDataModule, SklearnDigits, StrokeDigitsSource
from lightning_synth.rendering.handwriting import (
    HAND_ALLOGRAPHS,
    HAND_WIDTHS,
    hand_digit_strokes,
    spline_segments,
)
from lightning_synth.rendering.strokes import STROKE_FONTS, StrokeDigits, digit_strokes


def _images(dataset: StrokeDigits, indices) -> torch.Tensor:
    return torch.stack([image for image, _ in dataset.__getitems__(indices)])


def test_every_default_font_has_all_ten_digits() -> None:
    for font in STROKE_FONTS:
        glyphs = digit_strokes(font)
        assert len(glyphs) == 10
        assert all(g.ndim == 3 and g.shape[1:] == (2, 2) and len(g) > 0 for g in glyphs)


def test_samples_depend_only_on_seed_and_index() -> None:
    dataset = StrokeDigits(length=40, seed=3)
    batch = _images(dataset, range(12))
    single = torch.stack([dataset[i][0] for i in (0, 5, 11)])
    assert torch.allclose(batch[[0, 5, 11]], single, atol=1e-6)
    assert torch.equal(_images(StrokeDigits(length=40, seed=3), [7]), batch[[7]])
    assert not torch.equal(_images(StrokeDigits(length=40, seed=4), [7]), batch[[7]])
    assert [label for _, label in dataset.__getitems__(range(12))] == [i % 10 for i in range(12)]
    assert torch.equal(dataset[-1][0], dataset[39][0])
    with pytest.raises(IndexError, match="out of range"):
        dataset[40]


def test_images_are_framed_like_mnist() -> None:
    dataset = StrokeDigits(length=30, seed=0)
    images = _images(dataset, range(30))
    assert images.shape == (30, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    # light strokes on black, a few percent to a third of the pixels inked
    ink = images[:, 0]
    border = torch.cat([ink[:, 0], ink[:, -1], ink[:, :, 0], ink[:, :, -1]], 1)
    assert border.mean() < 0.005
    coverage = (ink > 0.5).float().mean((1, 2))
    assert coverage.min() > 0.02 and coverage.max() < 0.4
    # centre of mass in the middle (within half a pixel), as MNIST's preprocessing does
    centres = torch.arange(28, dtype=torch.float32) + 0.5
    mass = ink.sum((1, 2))
    rows = (ink.sum(2) * centres).sum(1) / mass
    cols = (ink.sum(1) * centres).sum(1) / mass
    assert (rows - 14).abs().max() < 0.5 and (cols - 14).abs().max() < 0.5


def test_the_plain_font_shape_comes_through() -> None:
    # No bending, slant, rotation or stretch: a sans-serif "1" is a vertical bar (with a
    # short flag at the top).
    plain = StrokeDigits(
        length=10, fonts=["futural"], hand_fraction=0, jitter=0, max_rotation=0, max_shear=0, max_stretch=1,
        min_width=2, max_width=2,
    )  # fmt: skip
    one = plain[1][0][0]
    columns = (one[14:] > 0.5).any(0).sum()
    rows = (one > 0.5).any(1).sum()
    assert columns <= 3 and rows >= 15
    # Larger images scale the pen too: about the same share of ink.
    big = StrokeDigits(
        length=10, image_size=56, fonts=["futural"], hand_fraction=0, jitter=0, max_rotation=0, max_shear=0,
        max_stretch=1, min_width=2, max_width=2,
    )[1][0][0]  # fmt: skip
    share = float((one > 0.5).float().mean())
    assert float((big > 0.5).float().mean()) == pytest.approx(share, rel=0.35)


def test_options_change_what_they_say() -> None:
    light = StrokeDigits(length=10, seed=1)[4][0]
    dark = StrokeDigits(length=10, seed=1, polarity="dark_on_light")[4][0]
    assert torch.allclose(dark, 1 - light)
    colour = StrokeDigits(length=10, seed=1, channels=3)[4][0]
    assert colour.shape == (3, 28, 28) and torch.equal(colour[0], colour[2])
    thin = StrokeDigits(length=10, min_width=1, max_width=1)[8][0].mean()
    thick = StrokeDigits(length=10, min_width=3, max_width=3)[8][0].mean()
    assert thick > 1.8 * thin


def test_spline_passes_through_its_points_in_one_connected_path() -> None:
    points = np.array([(0.0, 0.0), (0.5, 0.4), (1.0, 0.0), (1.0, 1.0)])
    segments = spline_segments(points, pieces=5)
    assert segments.shape == (15, 2, 2)
    assert np.allclose(segments[1:, 0], segments[:-1, 1])  # each starts where the last ended
    assert np.allclose(segments[::5, 0], points[:3], atol=1e-6)
    assert np.allclose(segments[-1, 1], points[-1], atol=1e-6)
    assert np.array_equal(spline_segments(points[:2]), points[None, :2].astype(np.float32))


def test_hand_drawn_variants_cover_every_digit_inside_their_box() -> None:
    shapes = hand_digit_strokes()
    assert len(shapes) == 10
    for digit, variants in enumerate(shapes):
        assert len(variants) == len(HAND_ALLOGRAPHS[digit]) >= 2
        for segments in variants:
            assert segments.shape[1:] == (2, 2)
            assert segments[..., 0].max() <= HAND_WIDTHS[digit] + 0.05
            assert segments[..., 1].min() >= -0.05 and segments[..., 1].max() <= 1.05


def test_hand_fraction_chooses_between_hand_drawn_and_font_shapes() -> None:
    by_hand = _images(StrokeDigits(length=20, seed=2, hand_fraction=1.0), range(20))
    by_hand_other_fonts = StrokeDigits(length=20, seed=2, hand_fraction=1.0, fonts=["scripts"])
    assert torch.equal(_images(by_hand_other_fonts, range(20)), by_hand)  # fonts unused
    from_fonts = _images(StrokeDigits(length=20, seed=2, hand_fraction=0.0), range(20))
    assert not torch.equal(from_fonts, by_hand)


def test_softer_edges_spread_the_ink() -> None:
    crisp = StrokeDigits(length=10, seed=5, edge_softness=1.0)[3][0]
    soft = StrokeDigits(length=10, seed=5, edge_softness=2.5)[3][0]
    assert _partly_inked(soft) > 1.5 * _partly_inked(crisp)


def _partly_inked(image: torch.Tensor) -> int:
    return int(((image > 0.05) & (image < 0.95)).sum())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fonts": ["comic_sans"]}, "unknown Hershey font 'comic_sans'"),
        ({"min_width": 3.0, "max_width": 2.0}, "min_width <= max_width"),
        ({"image_size": 4}, "at least 8"),
        ({"polarity": "inverted"}, "polarity"),
        ({"max_stretch": 0.5}, "max_stretch"),
        ({"hand_fraction": 1.5}, "hand_fraction"),
        ({"edge_softness": 0.0}, "edge_softness"),
    ],
)
def test_bad_options_say_what_is_wrong(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StrokeDigitsSource(**options)


def test_source_feeds_the_mixed_datamodule_with_disjoint_stages() -> None:
    source = StrokeDigitsSource(train_length=64, val_length=20, test_length=20, image_size=16)
    train, val = source.dataset("train"), source.dataset("val")
    assert not torch.equal(train[0][0], val[0][0])
    data = MixedDomainDataModule(
        source, SklearnDigits(), image_size=16, channels=1, batch_size=16, num_workers=0
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch[IMAGE].shape == (16, 1, 16, 16)
    rendered = batch[DOMAIN] == RENDERED
    assert rendered.any() and (batch[LABEL][rendered] >= 0).all()
