"""``RenderedDigits``: printed digits 0-9 drawn from fonts, in the spirit of SynDigits.

Ganin & Lempitsky's SynDigits (2015) showed that digits rendered from many fonts with
random placement, rotation, stroke, colours and blur are close enough to house-number
photographs (SVHN) for domain adaptation to bridge the rest. This renderer makes such
images on the fly, from the fonts matplotlib ships, with no files to download.

Each sample is a pure function of ``(seed, index)``: its random generator is built from
those two numbers alone, so DataLoader workers and DDP processes agree on every image
and an epoch can be replayed exactly.

Beyond SynDigits, the default ``varied`` style also frames digits tight enough to fill
the image, stretches some to fill it both ways, draws pens from hairline to bold, and
binarises or lowers the resolution of some, as real digit sets differ in
(:mod:`~lightning_synth.rendering.digit_style`); ``style="syndigits"`` renders as before.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset

from lightning_synth.image_io import LUMA_WEIGHTS
from lightning_synth.rendering.digit_style import low_resolution, low_resolution_side
from lightning_synth.rendering.fonts import available_digit_fonts, glyph_mask, resolve_fonts

__all__ = ["PRINTED_STYLES", "PrintedStyle", "RenderedDigits", "available_digit_fonts"]

_LUMA = np.array(LUMA_WEIGHTS, dtype=np.float32)  # the project's one gray convention
# Stroke change in pixels of a 64 px font: one thin, mostly regular, some bold.
_WEIGHTS = np.array([-1, 0, 1, 2, 3])
_WEIGHT_CDF = np.cumsum([0.15, 0.35, 0.25, 0.15, 0.10])
#: A stretched digit grows by at most this factor in width, so a 1 stays a stroke.
_MAX_FILL_STRETCH = 3.0


@dataclass(frozen=True)
class PrintedStyle:
    """Ranges of the appearance of :class:`RenderedDigits` that its styles set.

    Args:
        fill: range of the share of the image height the font's digit band spans.
        stretch_fraction: share of digits widened to be as wide as tall (up to 3x).
        weights: stroke changes in pixels of a 64-pixel font, drawn uniformly from this
            range of integers; ``None``: SynDigits' mix (-1 to 3, mostly regular).
        max_shear: largest horizontal shear (slant), as ``dx / dy``.
        binarize_fraction: share of digits with two colours only (no texture, no noise).
        low_res_fraction: share of digits stored small and resized back up.
    """

    fill: tuple[float, float]
    stretch_fraction: float
    weights: tuple[int, int] | None
    max_shear: float
    binarize_fraction: float
    low_res_fraction: float


#: ``syndigits``: the renderer as it was (house-number crops, SVHN). ``varied``: also
#: tight crops (fill 1: OCR crops, USPS-like sets), stretched digits (Semeion), hairline
#: to bold type, bilevel scans and small stored images (see ``digit_style``).
PRINTED_STYLES: dict[str, PrintedStyle] = {
    "syndigits": PrintedStyle((0.5, 0.85), 0.0, None, 0.2, 0.0, 0.0),
    "varied": PrintedStyle((0.5, 1.0), 0.2, (-2, 4), 0.3, 0.2, 0.2),
}


@lru_cache(maxsize=32)
def _upsampler(cells: int, size: int) -> np.ndarray:
    """``size x cells`` bilinear interpolation matrix: smooth textures from a coarse grid."""
    pos = np.clip((np.arange(size) + 0.5) * cells / size - 0.5, 0, cells - 1)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, cells - 1)
    weights = np.zeros((size, cells), dtype=np.float32)
    np.add.at(weights, (np.arange(size), low), 1 - (pos - low))
    np.add.at(weights, (np.arange(size), high), pos - low)
    return weights


class RenderedDigits(Dataset):
    """Rendered images of printed digits 0-9 with their labels (SynDigits-like).

    Sample ``i`` has label ``i % 10`` (so classes are balanced in every window of ten
    indices) and shows that digit near the centre, possibly with neighbouring digits cut
    by the image border as in house-number crops (their values are random and not part of
    the label). Everything else (font, size, aspect,
    position, rotation, shear, stroke weight, colours, background, blur, noise,
    binarisation, resolution) is drawn from generators seeded by ``(seed, i)``.

    The ``style`` sets the ranges the arguments from ``fill`` on default to (``None``:
    the style's): ``varied`` (default) covers tight and loose framings, stretched digits,
    hairline to bold type, bilevel and low-resolution images; ``syndigits`` renders the
    SynDigits-like images of house-number crops this renderer made before it had styles.

    Args:
        length: number of samples; any size, as images are made on demand.
        image_size: height and width of the square images in pixels, at least 8.
        seed: base seed; sample ``i`` depends only on ``(seed, i)``.
        channels: 3 for RGB, 1 for grayscale (luma of the RGB image).
        fonts: font files (``.ttf``/``.otf``) or folders of them; ``None`` uses the
            fonts bundled with matplotlib that can draw digits (see
            ``available_digit_fonts()``).
        max_rotation: largest rotation in degrees; most samples are well inside it.
        neighbor_prob: chance that each side shows a neighbouring digit (distractor).
        min_contrast: smallest luma difference between digit and background, in [0, 0.9].
        max_blur: largest Gaussian blur standard deviation, in pixels of a 32 px image.
        max_noise: largest standard deviation of the additive (near-Gaussian) pixel noise.
        style: ``varied`` or ``syndigits``, the ranges of the arguments below.
        fill: range of the share of the image height the digits' band spans (``varied``:
            0.5 to 1, house-number crops to tight ones; ``syndigits``: 0.5 to 0.85).
        stretch_fraction: share of digits widened to be as wide as tall, aspect not kept
            (``varied``: 0.2).
        weights: stroke changes in pixels of a 64-pixel font, a range of integers drawn
            uniformly (``varied``: -2 to 4, hairline to bold; ``syndigits``: -1 to 3,
            mostly 0).
        max_shear: largest slant, as ``dx / dy`` (``varied``: 0.3; ``syndigits``: 0.2).
        binarize_fraction: share of digits in two flat colours, as bilevel scans
            (``varied``: 0.2).
        low_res_fraction: share of digits stored at ``min_resolution`` to ``image_size``
            pixels and resized back up (``varied``: 0.2).
        min_resolution: fewest pixels the digit's longer side keeps when stored small (8:
            scikit-learn's digits fill 8 x 8).
    """

    def __init__(
        self,
        length: int = 50_000,
        image_size: int = 32,
        seed: int = 0,
        channels: Literal[1, 3] = 3,
        fonts: list[str] | None = None,
        max_rotation: float = 15.0,
        neighbor_prob: float = 0.3,
        min_contrast: float = 0.3,
        max_blur: float = 1.0,
        max_noise: float = 0.05,
        style: Literal["varied", "syndigits"] = "varied",
        fill: tuple[float, float] | None = None,
        stretch_fraction: float | None = None,
        weights: tuple[int, int] | None = None,
        max_shear: float | None = None,
        binarize_fraction: float | None = None,
        low_res_fraction: float | None = None,
        min_resolution: int = 8,
    ) -> None:
        super().__init__()
        _check(length > 0, f"length must be > 0, got {length}; pass the number of samples")
        _check(image_size >= 8, f"image_size must be >= 8 pixels, got {image_size}; pass e.g. 32")
        _check(seed >= 0, f"seed must be >= 0, got {seed}; numpy seeds are non-negative")
        _check(channels in (1, 3), f"channels must be 1 or 3, got {channels!r}")
        _check(0 <= max_rotation <= 90, f"max_rotation must be in [0, 90], got {max_rotation}")
        _check(0 <= neighbor_prob <= 1, f"neighbor_prob must be in [0, 1], got {neighbor_prob}")
        _check(0 <= min_contrast <= 0.9, f"min_contrast must be in [0, 0.9], got {min_contrast}")
        _check(max_blur >= 0, f"max_blur must be >= 0, got {max_blur}")
        _check(0 <= max_noise <= 1, f"max_noise must be in [0, 1], got {max_noise}")
        _check(
            style in PRINTED_STYLES, f"style must be one of {sorted(PRINTED_STYLES)}, got {style!r}"
        )
        base = PRINTED_STYLES[style]
        self.fill = tuple(float(f) for f in (fill if fill is not None else base.fill))
        _check(
            len(self.fill) == 2 and 0 < self.fill[0] <= self.fill[1] <= 1.2,
            f"fill must satisfy 0 < fill[0] <= fill[1] <= 1.2, got {fill}",
        )
        self.weights = tuple(int(w) for w in weights) if weights is not None else base.weights
        _check(
            self.weights is None or (len(self.weights) == 2 and self.weights[0] <= self.weights[1]),
            f"weights must be (lowest, highest), got {weights}",
        )
        _check(
            self.weights is None or self.weights[0] >= -8,
            f"weights below -8 erase most glyphs, got {weights}",
        )
        self.stretch_fraction = _fraction("stretch_fraction", stretch_fraction, base)
        self.binarize_fraction = _fraction("binarize_fraction", binarize_fraction, base)
        self.low_res_fraction = _fraction("low_res_fraction", low_res_fraction, base)
        self.max_shear = float(max_shear if max_shear is not None else base.max_shear)
        _check(self.max_shear >= 0, f"max_shear must be >= 0, got {max_shear}")
        _check(min_resolution >= 2, f"min_resolution must be at least 2, got {min_resolution}")
        self.style = style
        self.min_resolution = int(min_resolution)
        self.length = int(length)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.channels = int(channels)
        # Resolved once here, so workers and processes never rescan font folders.
        self.fonts = resolve_fonts(fonts)
        self.max_rotation = float(max_rotation)
        self.neighbor_prob = float(neighbor_prob)
        self.min_contrast = float(min_contrast)
        self.max_blur = float(max_blur)
        self.max_noise = float(max_noise)
        # Glyphs are rasterised (and cached) at twice the image size and filtered down,
        # so edges stay anti-aliased at every scale, and stroke weights come in half pixels.
        self._font_size = 2 * self.image_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = operator.index(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(
                f"index {index} out of range for RenderedDigits of length {self.length}"
            )
        rng = np.random.default_rng((self.seed, index))
        # The added factors draw from a generator of their own, a fixed number of times,
        # so the ``syndigits`` style renders the images it rendered before they existed.
        looks = np.random.default_rng((self.seed, index, 1))
        stretch, binary, threshold, small, pick = looks.random(5)
        label = index % 10
        coverage, share = self._coverage(rng, label, stretch < self.stretch_fraction)
        low_res = low_resolution_side(
            small < self.low_res_fraction, pick, self.min_resolution, self.image_size, share
        )
        if binary < self.binarize_fraction:
            coverage = (coverage > 0.35 + 0.3 * threshold).astype(np.float32)
        image = self._compose(coverage, rng, flat=binary < self.binarize_fraction)
        image = torch.from_numpy(image)
        if low_res:
            image = low_resolution(image[None], torch.tensor([low_res]))[0]
        return image, label

    def _coverage(
        self, rng: np.random.Generator, label: int, widen: bool
    ) -> tuple[np.ndarray, float]:
        """Where the ink is (``S x S`` float in [0, 1]): the digit line, shrunk and warped;
        ``widen``: the labelled digit made as wide as it is tall. Also the share of the
        height the digits' band spans."""
        size, font_size = self.image_size, self._font_size
        font = self.fonts[rng.integers(len(self.fonts))]
        draw = rng.random()
        if self.weights is None:
            level = int(_WEIGHTS[np.searchsorted(_WEIGHT_CDF[:-1], draw, side="right")])
        else:
            low, high = self.weights
            level = low + min(int(draw * (high - low + 1)), high - low)
        weight = round(level * font_size / 64)
        left = rng.random() < self.neighbor_prob
        right = rng.random() < self.neighbor_prob
        digits = [int(rng.integers(10))] * left + [label] + [int(rng.integers(10))] * right
        glyphs = [glyph_mask(font, d, font_size, weight) for d in digits]
        band = glyphs[0][2]
        gap = int(band * rng.uniform(0.05, 0.25))
        pad = font_size // 8
        line = Image.new("L", (sum(g[0].width + gap for g in glyphs) + 2 * pad, band + 4 * pad))
        x = pad
        for i, (mask, top, _) in enumerate(glyphs):
            if i == left:  # the labelled digit: remember its centre and ink size
                cx, cy, ink_w, ink_h = x + mask.width / 2, 2 * pad + band / 2, *mask.size
            line.paste(mask, (x, 2 * pad + top))
            x += mask.width + gap

        # Shrink first (PIL's resize filters, so no aliasing), then rotate and shear at the
        # output resolution, where the affine map is near-isometric and bilinear is enough.
        share = rng.uniform(*self.fill)  # of the height, that the digits' band spans
        zoom = size * share / band
        stretch = math.exp(rng.uniform(-0.25, 0.2))  # condensed to extended type
        if widen:  # the digit's box made square, as sets that stretch digits to fill
            stretch = max(stretch, min(ink_h / max(ink_w, 1), _MAX_FILL_STRETCH))
        shape = (max(1, round(line.width * zoom * stretch)), max(1, round(line.height * zoom)))
        small = line.resize(shape, Image.BILINEAR)
        fx, fy = shape[0] / line.width, shape[1] / line.height
        cx, cy, ink_w, ink_h = cx * fx, cy * fy, ink_w * fx, ink_h * fy

        theta = math.radians(min(max(rng.normal(0, 0.5), -1), 1) * self.max_rotation)
        shear = rng.uniform(-self.max_shear, self.max_shear)
        cos, sin = math.cos(theta), math.sin(theta)
        # forward = rotation @ [[1, shear], [0, 1]]; its determinant is 1, so the inverse
        # is the adjugate.
        a, b, c, d = cos, cos * shear - sin, sin, sin * shear + cos
        # Off-centre by at most half the room the rotated ink box leaves, as in crops of
        # house numbers where the labelled digit is roughly centred.
        room_x = max(size - abs(a) * ink_w - abs(b) * ink_h, 0) / 4
        room_y = max(size - abs(c) * ink_w - abs(d) * ink_h, 0) / 4
        tx = size / 2 + rng.uniform(-room_x, room_x)
        ty = size / 2 + rng.uniform(-room_y, room_y)
        coeffs = (d, -b, cx - d * tx + b * ty, -c, a, cy + c * tx - a * ty)
        warped = small.transform((size, size), Image.Transform.AFFINE, coeffs, Image.BILINEAR)
        blur = self.max_blur * size / 32 * rng.random() ** 2  # mostly sharp, some soft
        if blur > 0.3:
            warped = warped.filter(ImageFilter.GaussianBlur(blur))
        return np.asarray(warped) * np.float32(1 / 255), share

    def _compose(
        self, coverage: np.ndarray, rng: np.random.Generator, flat: bool = False
    ) -> np.ndarray:
        """Paints ``coverage`` in a foreground colour over a background, adds noise;
        ``flat``: two colours only (a flat background and no noise)."""
        size = self.image_size
        # Rejection sampling of colour pairs in one vectorised draw: uniform RGB pairs,
        # keep the first whose luma differs enough for the digit to stay legible.
        pairs = rng.random((32, 2, 3), dtype=np.float32)
        luma = pairs @ _LUMA
        ok = np.flatnonzero(np.abs(luma[:, 0] - luma[:, 1]) >= self.min_contrast)
        colours = pairs[ok[0]] if ok.size else np.array([[0.1] * 3, [0.9] * 3], np.float32)
        # Desaturating towards the colour's own luma keeps the contrast just checked;
        # uniform RGB is garish, printed digits and their walls are mostly muted.
        grey = (colours @ _LUMA)[:, None]
        colours = grey + rng.random((2, 1), dtype=np.float32) ** 1.5 * (colours - grey)
        dark, light = colours[np.argsort(grey[:, 0])]
        fg, bg = (dark, light) if rng.random() < 0.5 else (light, dark)

        # Background: flat, a linear gradient, or a smooth blotchy texture. Its swing is
        # bounded by a quarter of the contrast, so the digit stays the salient thing.
        amplitude = 0.25 * float(light @ _LUMA - dark @ _LUMA) * rng.random()
        kind = rng.random()
        if kind < 0.3 or flat:
            field = bg[:, None, None]
        elif kind < 0.65:
            angle = rng.uniform(0, 2 * math.pi)
            ramp = _ramp(size)
            t = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
            swing = rng.uniform(-amplitude, amplitude, (3, 1, 1)).astype(np.float32)
            field = bg[:, None, None] + swing * t
        else:
            cells = int(rng.integers(2, 6))
            grid = rng.uniform(-amplitude, amplitude, (3, cells, cells))
            up = _upsampler(cells, size)
            field = bg[:, None, None] + up @ grid.astype(np.float32) @ up.T
        image = field + coverage * (fg[:, None, None] - field)

        noise = self.max_noise * rng.random()
        if (
            noise > 0.004 and not flat
        ):  # below 1/255 it would vanish in any 8-bit copy: skip the cost
            # The sum of two uniforms (triangular) looks like Gaussian noise at a quarter
            # of the cost of a normal draw; sqrt(6) makes its std equal ``noise``.
            u = rng.random((2, 3, size, size), dtype=np.float32)
            image = image + (u[0] + u[1] - 1) * np.float32(noise * math.sqrt(6))
        if self.channels == 1:
            image = (_LUMA @ image.reshape(3, -1)).reshape(1, size, size)
        return np.ascontiguousarray(image.clip(0, 1), dtype=np.float32)


def _fraction(name: str, value: float | None, style: PrintedStyle) -> float:
    value = float(value if value is not None else getattr(style, name))
    _check(0 <= value <= 1, f"{name} must be in [0, 1], got {value}")
    return value


@lru_cache(maxsize=32)
def _ramp(size: int) -> np.ndarray:
    return np.linspace(-0.7, 0.7, size, dtype=np.float32)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
