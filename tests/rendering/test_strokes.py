"""StrokeDigits: hand-drawn and Hershey pen paths, deterministic per index, framed and
finished as real digit sets vary (``varied``) or as MNIST is made (``mnist``)."""

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


def test_mnist_style_frames_like_mnist() -> None:
    dataset = StrokeDigits(length=30, seed=0, style="mnist")
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
        length=10, style="mnist", fonts=["futural"], hand_fraction=0, jitter=0, max_rotation=0,
        max_shear=0, max_stretch=1, min_width=2, max_width=2,
    )  # fmt: skip
    one = plain[1][0][0]
    columns = (one[14:] > 0.5).any(0).sum()
    rows = (one > 0.5).any(1).sum()
    assert columns <= 3 and rows >= 15
    # Larger images scale the pen too: about the same share of ink.
    big = StrokeDigits(
        length=10, style="mnist", image_size=56, fonts=["futural"], hand_fraction=0, jitter=0,
        max_rotation=0, max_shear=0, max_stretch=1, min_width=2, max_width=2,
    )[1][0][0]  # fmt: skip
    share = float((one > 0.5).float().mean())
    assert float((big > 0.5).float().mean()) == pytest.approx(share, rel=0.35)


def test_options_change_what_they_say() -> None:
    light = StrokeDigits(length=10, seed=1, style="mnist")[4][0]
    dark = StrokeDigits(length=10, seed=1, style="mnist", dark_on_light=1.0)[4][0]
    assert torch.allclose(dark, 1 - light)
    colour = StrokeDigits(length=10, seed=1, channels=3)[4][0]
    assert colour.shape == (3, 28, 28) and torch.equal(colour[0], colour[2])
    thin = StrokeDigits(length=10, style="mnist", min_width=1, max_width=1)[8][0].mean()
    thick = StrokeDigits(length=10, style="mnist", min_width=3, max_width=3)[8][0].mean()
    assert thick > 1.8 * thin


def _extent(mask: torch.Tensor) -> torch.Tensor:
    """Length of the run from the first to the last ``True`` of each row of ``B x N``."""
    positions = torch.arange(mask.shape[1])
    first = torch.where(mask, positions, mask.shape[1]).amin(1)
    last = torch.where(mask, positions, -1).amax(1)
    return (last - first + 1).clamp_min(0)


def _box(images: torch.Tensor, threshold: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Width and height in pixels of each light-on-dark image's inked bounding box."""
    ink = images[:, 0] > threshold
    return _extent(ink.any(1)), _extent(ink.any(2))


def test_mnist_style_renders_the_images_it_rendered_before_styles() -> None:
    # Sums of images rendered by the renderer before it had styles (same seed, indices).
    images = _images(StrokeDigits(length=200, seed=3, style="mnist"), [0, 7, 123])[:, 0]
    sums = [float(image.sum()) for image in images]
    assert sums == pytest.approx([124.7599, 77.2759, 145.0665], abs=2e-3)
    assert float(images[2, 14].sum()) == pytest.approx(10.6353, abs=2e-3)


def test_tight_framing_fills_the_frame_and_mnist_framing_keeps_its_margin() -> None:
    options = {"length": 40, "seed": 2, "style": "mnist", "mass_centring": 0.0}
    width, height = _box(_images(StrokeDigits(fill=(1.0, 1.0), **options), range(40)))
    assert (torch.maximum(width, height) >= 27).all()
    width, height = _box(_images(StrokeDigits(**options), range(40)))
    longer = torch.maximum(width, height)
    assert (longer >= 16).all() and (longer <= 21).all()  # MNIST's 20-pixel box


def test_stretched_digits_fill_both_sides_kept_aspects_do_not() -> None:
    options = {"length": 40, "seed": 4, "style": "mnist", "mass_centring": 0.0}
    options["fill"] = (1.0, 1.0)
    kept = torch.minimum(*_box(_images(StrokeDigits(stretch_fraction=0.0, **options), range(40))))
    stretched = _images(StrokeDigits(stretch_fraction=1.0, **options), range(40))
    shorter = torch.minimum(*_box(stretched))
    not_one = torch.arange(40) % 10 != 1
    assert (shorter[not_one] >= 26).all()
    assert kept[not_one].float().mean() < 22
    # Widened 3x at most (pen included, a little more): a bare 1 stays a stroke.
    assert (shorter <= 3 * kept + 3).all() and shorter[~not_one].min() < 20


def test_centring_by_centre_of_mass_or_by_bounding_box() -> None:
    options = {"length": 30, "seed": 6, "style": "mnist"}
    centres = torch.arange(28, dtype=torch.float32) + 0.5

    def mass_centres(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ink = images[:, 0]
        mass = ink.sum((1, 2))
        return (ink.sum(1) * centres).sum(1) / mass, (ink.sum(2) * centres).sum(1) / mass

    by_mass = _images(StrokeDigits(mass_centring=1.0, **options), range(30))
    col, row = mass_centres(by_mass)
    assert (col - 14).abs().max() < 0.5 and (row - 14).abs().max() < 0.5
    by_box = _images(StrokeDigits(mass_centring=0.0, **options), range(30))
    ink = by_box[:, 0] > 0.3
    positions = torch.arange(28)
    for mask in (ink.any(1), ink.any(2)):
        first = torch.where(mask, positions, 28).amin(1)
        last = torch.where(mask, positions, -1).amax(1)
        assert ((first + last + 1) / 2 - 14).abs().max() <= 1.0
    col, row = mass_centres(by_box)
    assert torch.maximum((col - 14).abs(), (row - 14).abs()).max() > 1.0


def test_wider_pens_ink_more() -> None:
    coverage = [
        float(
            _images(
                StrokeDigits(length=20, seed=7, style="mnist", min_width=w, max_width=w), range(20)
            ).mean()
        )
        for w in (1.0, 2.0, 3.0, 4.0, 5.0)
    ]
    assert all(a < b for a, b in zip(coverage, coverage[1:], strict=False)), coverage


def test_binarized_digits_have_two_levels() -> None:
    options = {"length": 20, "seed": 8, "style": "mnist"}
    binary = _images(StrokeDigits(binarize_fraction=1.0, **options), range(20))
    assert set(torch.unique(binary).tolist()) == {0.0, 1.0}
    assert len(torch.unique(_images(StrokeDigits(**options), range(20)))) > 50


def test_ground_level_contrast_and_polarity() -> None:
    options = {"length": 60, "seed": 9, "style": "mnist", "max_background": 0.25}
    options["min_contrast"] = 0.6
    light = _images(StrokeDigits(dark_on_light=0.0, **options), range(60))[:, 0]
    dark = _images(StrokeDigits(dark_on_light=1.0, **options), range(60))[:, 0]
    assert torch.allclose(dark, 1 - light)
    ground = light.flatten(1).median(1).values  # most pixels are ground
    assert ground.max() <= 0.25 + 1e-6 and ground.max() > 0.05 and ground.min() < 0.02
    assert (light.flatten(1).amax(1) - ground >= 0.6 * 0.97).all()
    assert (dark.flatten(1).median(1).values >= 0.75 - 1e-6).all()  # paper-light ground
    assert (light.flatten(1).amax(1) <= 1.0).all()


def test_blur_low_resolution_and_noise_do_what_they_say() -> None:
    options = {"length": 20, "seed": 11, "style": "mnist"}
    sharp = _images(StrokeDigits(**options), range(20))[:, 0]
    blurred = _images(StrokeDigits(max_blur=2.0, **options), range(20))[:, 0]
    assert sum(map(_partly_inked, blurred)) > 1.3 * sum(map(_partly_inked, sharp))
    assert blurred.sum() == pytest.approx(float(sharp.sum()), rel=0.05)  # ink spread, not lost

    def roughness(images: torch.Tensor) -> float:
        return float((images[:, 1:] - images[:, :-1]).abs().sum())

    small = _images(StrokeDigits(low_res_fraction=1.0, min_resolution=8, **options), range(20))
    assert roughness(small[:, 0]) < 0.8 * roughness(sharp)
    noisy = _images(StrokeDigits(max_noise=0.2, **options), range(20))[:, 0]
    difference = noisy - sharp  # the same digits: noise is drawn after everything else
    assert 0.02 < float(difference.std()) < 0.2 and float(difference.mean().abs()) < 0.05


def test_varied_default_covers_framings_and_levels() -> None:
    images = _images(StrokeDigits(length=200, seed=10), range(200))[:, 0]
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
    assert (images.flatten(1).median(1).values < 0.5).all()  # light on dark, as sets are stored
    mixed = _images(StrokeDigits(length=200, seed=10, dark_on_light=0.3), range(200))[:, 0]
    dark = mixed.flatten(1).median(1).values > 0.5
    assert 0.2 < float(dark.float().mean()) < 0.4  # the share asked for
    light = torch.where(dark[:, None, None], 1 - mixed, mixed)
    ground = light.flatten(1).median(1).values[:, None, None]
    top = light.flatten(1).amax(1)[:, None, None]
    ink = (light - ground) / (top - ground).clamp_min(1e-6)
    longer = torch.maximum(*_box(ink[:, None], threshold=0.5))
    assert float((longer <= 20).float().mean()) > 0.2  # MNIST's box and looser crops
    assert float((longer >= 26).float().mean()) > 0.2  # crops that fill the frame
    assert float((ground.flatten() > 0.05).float().mean()) > 0.1  # grey grounds too


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
    crisp = StrokeDigits(length=10, seed=5, style="mnist", edge_softness=1.0)[3][0]
    soft = StrokeDigits(length=10, seed=5, style="mnist", edge_softness=2.5)[3][0]
    assert _partly_inked(soft) > 1.5 * _partly_inked(crisp)


def _partly_inked(image: torch.Tensor) -> int:
    return int(((image > 0.05) & (image < 0.95)).sum())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fonts": ["comic_sans"]}, "unknown Hershey font 'comic_sans'"),
        ({"min_width": 3.0, "max_width": 2.0}, "min_width <= max_width"),
        ({"image_size": 4}, "at least 8"),
        ({"dark_on_light": 1.5}, "dark_on_light"),
        ({"style": "usps"}, "style must be one of"),
        ({"fill": (0.9, 0.5)}, "fill must satisfy"),
        ({"min_width": 6.0}, "min_width <= max_width"),  # above the style's thickest pen
        ({"max_background": 1.0}, "max_background"),
        ({"min_contrast": 0.0}, "min_contrast"),
        ({"min_resolution": 1}, "min_resolution"),
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


def test_source_passes_the_style_and_its_ranges_on() -> None:
    source = StrokeDigitsSource(
        train_length=8,
        val_length=4,
        test_length=4,
        style="mnist",
        fill=(1.0, 1.0),
        dark_on_light=1.0,
    )
    dataset = source.dataset("train")
    assert dataset.style.fill == (1.0, 1.0) and dataset.style.dark_on_light == 1.0
    assert dataset.style.width == (2.0, 3.5)  # the mnist style's pens where none is given
    expected = StrokeDigits(length=8, seed=0, style="mnist", fill=(1.0, 1.0), dark_on_light=1.0)
    assert torch.equal(_images(dataset, range(8)), _images(expected, range(8)))
