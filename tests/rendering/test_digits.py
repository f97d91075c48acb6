"""Tests of the SynDigits-style renderer ``RenderedDigits``."""

from __future__ import annotations

import collections
import os
import pickle
import shutil

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont
from sklearn.neighbors import KNeighborsClassifier
from torch.utils.data import DataLoader

from lightning_synth.rendering import digits as digits_module
from lightning_synth.rendering.digit_style import low_resolution
from lightning_synth.rendering.digits import RenderedDigits, available_digit_fonts

MPL_FONTS = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


def _batch(dataset: RenderedDigits, indices: range) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in indices])


def test_sample_is_a_function_of_seed_and_index() -> None:
    dataset = RenderedDigits(length=100, seed=5)
    first = _batch(dataset, range(8))
    assert torch.equal(first, _batch(dataset, range(8)))
    # Reading other samples in between must not shift any hidden RNG state.
    dataset[50]
    assert torch.equal(dataset[3][0], first[3])
    assert torch.equal(_batch(RenderedDigits(length=100, seed=5), range(8)), first)
    other = _batch(RenderedDigits(length=100, seed=6), range(8))
    assert not torch.equal(other, first)
    assert all(not torch.equal(a, b) for a, b in zip(other, first, strict=True))


def test_pickled_copy_renders_the_same_images() -> None:
    # DDP and spawn-started workers get the dataset by pickle, not by fork.
    dataset = RenderedDigits(length=50, seed=1)
    copy = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(_batch(copy, range(10)), _batch(dataset, range(10)))


@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 32), (3, 48), (1, 8)])
def test_shape_dtype_range_and_label(channels: int, size: int) -> None:
    dataset = RenderedDigits(length=40, image_size=size, channels=channels)
    assert len(dataset) == 40
    for i in range(0, 40, 7):
        image, label = dataset[i]
        assert image.shape == (channels, size, size)
        assert image.dtype == torch.float32
        assert 0.0 <= image.min().item() and image.max().item() <= 1.0
        assert type(label) is int and 0 <= label <= 9
        assert image.std().item() > 0.02  # something is drawn


def test_virtual_length_and_index_bounds() -> None:
    dataset = RenderedDigits(length=10**9)
    assert len(dataset) == 10**9
    assert dataset[10**9 - 1][0].shape == (3, 32, 32)
    assert torch.equal(dataset[-1][0], dataset[10**9 - 1][0])
    with pytest.raises(IndexError, match="out of range"):
        dataset[10**9]
    with pytest.raises(IndexError, match="out of range"):
        dataset[-(10**9) - 1]


def test_labels_cover_all_digits_evenly() -> None:
    dataset = RenderedDigits(length=200)
    counts = collections.Counter(dataset[i][1] for i in range(200))
    assert sorted(counts) == list(range(10))
    assert set(counts.values()) == {20}


def _ink_maps(images: np.ndarray) -> np.ndarray:
    """Per-image ink strength in [0, 1], whatever the colours and polarity."""
    x = images.reshape(len(images), -1)
    x = np.abs(x - np.median(x, axis=1, keepdims=True))
    return x / (x.max(axis=1, keepdims=True) + 1e-6)


def test_labels_match_the_drawn_digit() -> None:
    # Ground truth from another code path: each font's digits drawn by plain PIL,
    # centred, at three heights. Nearest-template classification of rendered samples
    # (defaults: neighbours, rotation, noise all on) must agree with the labels far
    # above chance (10%); an off-by-one or a neighbour's label would fall to ~5%.
    size = 16
    templates, classes = [], []
    for path in available_digit_fonts():
        font = ImageFont.truetype(path, 64)
        for digit in range(10):
            canvas = Image.new("L", (64, 64))
            ImageDraw.Draw(canvas).text((32, 32), str(digit), font=font, fill=255, anchor="mm")
            glyph = canvas.crop(canvas.getbbox())
            for height in (9, 11, 13):
                width = max(1, round(glyph.width * height / glyph.height))
                tile = Image.new("L", (size, size))
                tile.paste(
                    glyph.resize((width, height), Image.BILINEAR),
                    ((size - width) // 2, (size - height) // 2),
                )
                templates.append(np.asarray(tile, dtype=np.float32) / 255)
                classes.append(digit)
    nearest = KNeighborsClassifier(1).fit(_ink_maps(np.stack(templates)), classes)

    dataset = RenderedDigits(length=300, image_size=size, channels=1, seed=3)
    images = _ink_maps(_batch(dataset, range(300)).numpy())
    labels = np.array([dataset[i][1] for i in range(300)])
    assert nearest.score(images, labels) > 0.35


def test_many_fonts_and_varied_images(monkeypatch: pytest.MonkeyPatch) -> None:
    used: collections.Counter[str] = collections.Counter()
    real_glyph_mask = digits_module.glyph_mask

    def recording_glyph_mask(font: str, *args: int):
        used[os.path.basename(font)] += 1
        return real_glyph_mask(font, *args)

    monkeypatch.setattr(digits_module, "glyph_mask", recording_glyph_mask)
    dataset = RenderedDigits(length=300, channels=1, seed=11)
    images = _batch(dataset, range(300))
    assert len(used) >= 20, f"only {len(used)} fonts used: {sorted(used)}"
    # Pixels differ across the batch (position, size, colours), not just by noise.
    assert images.std(dim=0).mean().item() > 0.15
    assert len({tuple(im.flatten()[:50].tolist()) for im in images}) == 300
    # Both polarities: dark digits on light grounds and light digits on dark grounds.
    means = images.mean(dim=(1, 2, 3))
    assert (means < 0.35).sum() > 30 and (means > 0.65).sum() > 30


def test_digit_stands_out_from_background() -> None:
    dataset = RenderedDigits(length=100, channels=1, min_contrast=0.4, max_noise=0.0, seed=2)
    spans = [float(image.max() - image.min()) for image, _ in (dataset[i] for i in range(100))]
    assert min(spans) > 0.25


def test_available_fonts_skip_fonts_without_digits() -> None:
    names = {os.path.basename(path) for path in available_digit_fonts()}
    assert {"DejaVuSans.ttf", "cmr10.ttf", "STIXGeneral.ttf"} <= names
    # No digit code points, a placeholder box for everything, or symbols at '0'-'9'.
    assert not names & {"STIXSizOneSymReg.ttf", "LastResortHE-Regular.ttf", "cmsy10.ttf"}
    assert not names & {"cmex10.ttf", "DejaVuSansDisplay.ttf"}
    assert len(names) >= 20


def test_custom_fonts_files_and_folders(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    serif = os.path.join(MPL_FONTS, "DejaVuSerif.ttf")
    shutil.copy(serif, tmp_path / "a.ttf")
    shutil.copy(os.path.join(MPL_FONTS, "cmsy10.ttf"), tmp_path / "symbols.ttf")
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    assert RenderedDigits(fonts=[str(tmp_path)]).fonts == (str((tmp_path / "a.ttf").resolve()),)

    used: set[str] = set()
    real_glyph_mask = digits_module.glyph_mask
    monkeypatch.setattr(
        digits_module,
        "glyph_mask",
        lambda font, *args: used.add(font) or real_glyph_mask(font, *args),
    )
    dataset = RenderedDigits(length=20, fonts=[serif])
    _batch(dataset, range(20))
    assert used == {os.path.realpath(serif)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 4}, "image_size must be >= 8"),
        ({"length": 0}, "length must be > 0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"neighbor_prob": 1.5}, "neighbor_prob must be in"),
        ({"fonts": ["/no/such/font.ttf"]}, "fonts: '/no/such/font.ttf' does not exist"),
        ({"fonts": [os.path.join(MPL_FONTS, "cmsy10.ttf")]}, "cannot draw the ten digits"),
        ({"fonts": []}, "fonts: the list is empty"),
    ],
)
def test_bad_arguments_name_the_argument_and_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenderedDigits(**kwargs)


def test_dataloader_workers_render_the_same_images() -> None:
    dataset = RenderedDigits(length=48, seed=4)
    serial = list(DataLoader(dataset, batch_size=12, num_workers=0))
    parallel = list(DataLoader(dataset, batch_size=12, num_workers=2))
    assert len(serial) == len(parallel) == 4
    for (images_a, labels_a), (images_b, labels_b) in zip(serial, parallel, strict=True):
        assert images_a.shape == (12, 3, 32, 32)
        assert torch.equal(images_a, images_b)
        assert torch.equal(labels_a, labels_b)


def test_syndigits_style_renders_the_images_it_rendered_before_styles() -> None:
    # Sums of images rendered by the renderer before it had styles (same seed, indices).
    dataset = RenderedDigits(length=60, seed=5, channels=1, image_size=28, style="syndigits")
    sums = [float(dataset[i][0].sum()) for i in (0, 7)]
    assert sums == pytest.approx([449.1948, 433.7986], abs=5e-3)


def _plain(**options) -> RenderedDigits:
    """One font, gray, no neighbours, rotation, slant, noise or blur: one factor at a time."""
    settings = {
        "length": 40,
        "image_size": 32,
        "channels": 1,
        "seed": 1,
        "fonts": [os.path.join(MPL_FONTS, "DejaVuSans.ttf")],
        "max_rotation": 0.0,
        "max_shear": 0.0,
        "neighbor_prob": 0.0,
        "max_noise": 0.0,
        "max_blur": 0.0,
        "stretch_fraction": 0.0,
        "binarize_fraction": 0.0,
        "low_res_fraction": 0.0,
        "weights": (0, 0),
        "min_contrast": 0.5,
    }
    return RenderedDigits(**{**settings, **options})


def _ink_boxes(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Width and height of each image's ink (half its strongest contrast) in pixels."""
    ink = _ink_maps(images).reshape(len(images), *images.shape[-2:]) > 0.5
    widths = [np.ptp(np.flatnonzero(mask.any(0))) + 1 for mask in ink]
    heights = [np.ptp(np.flatnonzero(mask.any(1))) + 1 for mask in ink]
    return np.array(widths), np.array(heights)


def test_fill_sets_how_much_of_the_frame_the_digit_spans() -> None:
    _, tight = _ink_boxes(_batch(_plain(fill=(1.0, 1.0)), range(40)).numpy())
    _, loose = _ink_boxes(_batch(_plain(fill=(0.5, 0.5)), range(40)).numpy())
    assert np.median(tight) >= 30 and tight.min() >= 26  # the digits fill the height
    assert 13 <= np.median(loose) <= 17


def test_stretched_digits_are_as_wide_as_tall() -> None:
    options = {"fill": (0.8, 0.8)}
    kept_w, kept_h = _ink_boxes(_batch(_plain(stretch_fraction=0.0, **options), range(40)).numpy())
    wide_w, wide_h = _ink_boxes(_batch(_plain(stretch_fraction=1.0, **options), range(40)).numpy())
    not_one = np.arange(40) % 10 != 1
    assert np.median(kept_w / kept_h) < 0.75
    assert np.median((wide_w / wide_h)[not_one]) > 0.9


def test_heavier_weights_ink_more() -> None:
    coverage = [
        float((_ink_maps(_batch(_plain(weights=(w, w)), range(20)).numpy()) > 0.5).mean())
        for w in (-1, 0, 2, 4)
    ]
    assert all(a < b for a, b in zip(coverage, coverage[1:], strict=False)), coverage


def test_binarized_digits_have_two_colours() -> None:
    images = _batch(_plain(binarize_fraction=1.0, max_noise=0.05), range(20))
    assert all(len(image.unique()) == 2 for image in images)
    grey = _batch(_plain(), range(20))
    assert all(len(image.unique()) > 2 for image in grey)


def test_low_resolution_is_the_same_digit_resized_down_and_up() -> None:
    sharp = _batch(_plain(fill=(1.0, 1.0)), range(10))
    small = _batch(_plain(fill=(1.0, 1.0), low_res_fraction=1.0, min_resolution=8), range(10))
    sides = []
    for image, reduced in zip(sharp, small, strict=True):
        errors = {
            side: float(
                (low_resolution(image[None], torch.tensor([side]))[0] - reduced).abs().max()
            )
            for side in range(8, 32)
        }
        side = min(errors, key=errors.get)
        assert errors[side] < 1e-5
        sides.append(side)
    assert len(set(sides)) > 3  # sides drawn per sample


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"style": "svhn"}, "style must be one of"),
        ({"fill": (0.9, 0.5)}, "fill must satisfy"),
        ({"weights": (3, 1)}, "weights must be"),
        ({"binarize_fraction": -0.1}, "binarize_fraction must be in"),
        ({"max_shear": -1.0}, "max_shear must be >= 0"),
    ],
)
def test_bad_style_arguments_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenderedDigits(**kwargs)


def test_source_passes_the_style_and_its_ranges_on() -> None:
    from lightning_synth.datamodules import RenderedDigitsSource

    source = RenderedDigitsSource(
        train_length=8, val_length=4, test_length=4, style="syndigits", weights=(1, 2)
    )
    dataset = source.dataset("train")
    assert (
        dataset.style == "syndigits" and dataset.weights == (1, 2) and dataset.fill == (0.5, 0.85)
    )
    expected = RenderedDigits(length=8, seed=0, style="syndigits", weights=(1, 2))
    assert torch.equal(_batch(dataset, range(8)), _batch(expected, range(8)))
