"""Handwriting-like digits drawn as pen paths: hand-drawn shapes and Hershey fonts.

Printed TrueType glyphs (:class:`~lightning_synth.rendering.RenderedDigits`) differ from
handwriting in shape more than in texture: serifs, closed 4s, flat-topped 7s, uniform
stroke weight. Hershey fonts describe each glyph as the pen's path, and
:mod:`~lightning_synth.rendering.handwriting` adds hand-drawn paths in the shapes people
write (open 4s, straight-stemmed 9s, ...), so a digit can be drawn the way a hand draws
it: the path is bent by a smooth random displacement, slanted, rotated and stretched, and
stroked with a soft-edged pen of random width. Then it is framed and finished the way real
digit sets differ (:mod:`~lightning_synth.rendering.digit_style`): from MNIST's centred
20-pixel box to tight crops that fill the frame, aspect kept or stretched, pens from
hairline to bold, grey or binarised, blurred, stored at a low resolution, on a black or
grey ground (or dark on light, when asked). ``style="mnist"`` renders as MNIST alone is made (light strokes on black,
the digit scaled into a 20/28 box and centred by its centre of mass).

The glyph paths come from the ``Hershey-Fonts`` package (MIT; the font data of Dr. A. V.
Hershey, 1967), a dependency of lightning-synth, so nothing is downloaded.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from functools import cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lightning_synth.rendering.digit_style import (
    MAX_FILL_STRETCH,
    STROKE_STYLES,
    StrokeStyle,
    StrokeStyleName,
    binarize,
    gaussian_blur,
    low_resolution,
    low_resolution_side,
)
from lightning_synth.rendering.handwriting import hand_digit_strokes

__all__ = ["STROKE_FONTS", "StrokeDigits", "digit_strokes"]

#: Hershey fonts with distinct digit shapes: sans, serif, italic, script and cursive.
STROKE_FONTS: tuple[str, ...] = (
    "futural",
    "futuram",
    "scripts",
    "scriptc",
    "cursive",
    "rowmans",
    "rowmand",
    "timesi",
    "timesr",
    "greeks",
)
#: Pen widths are given in pixels of a 28-pixel image and scale with ``image_size``.
_REFERENCE_SIZE = 28
#: Handwritten digits are narrower than font glyphs (MNIST: 14.6 px wide, 19.8 px tall).
_HANDWRITING_ASPECT = 0.8


@cache
def digit_strokes(font: str) -> tuple[np.ndarray, ...]:
    """The ten digits of a Hershey font as line segments, ``S x 2 (ends) x 2 (x, y)``.

    Coordinates are the font's units, ``y`` pointing down (image convention).

    Args:
        font: a Hershey font name, e.g. ``futural`` or ``scripts``.
    """
    from HersheyFonts import HersheyFonts

    fonts = HersheyFonts()
    if font not in fonts.default_font_names:
        raise ValueError(
            f"unknown Hershey font {font!r}; choose from {sorted(fonts.default_font_names)}"
        )
    fonts.load_default_font(font)
    glyphs = []
    for digit in range(10):
        segments = np.asarray(list(fonts.lines_for_text(str(digit))), dtype=np.float32)
        if segments.ndim != 3 or len(segments) == 0:
            raise ValueError(f"Hershey font {font!r} has no strokes for the digit {digit}")
        glyphs.append(segments)
    return tuple(glyphs)


class StrokeDigits(Dataset):
    """Handwriting-like digits 0-9, framed and finished as real digit sets vary, made on demand.

    Sample ``i`` has label ``i % 10`` and depends only on ``(seed, i)``, whatever the
    batch it is fetched in. A DataLoader fetches batches through ``__getitems__``, which
    strokes and finishes the whole batch at once.

    The appearance comes from a named style (:data:`~lightning_synth.rendering.digit_style.STROKE_STYLES`):
    ``varied`` (default) covers the framings, pens, levels and polarities of common digit
    sets; ``mnist`` renders as MNIST alone is made (and as this renderer did before it had
    styles). Each appearance argument left at ``None`` takes the style's value; one given
    replaces it.

    Args:
        length: number of samples.
        image_size: side of the square images in pixels, at least 8.
        seed: base seed.
        channels: 1 (gray) or 3 (the gray image repeated).
        fonts: Hershey font names; default :data:`STROKE_FONTS`.
        jitter: strength of the smooth random bending of the pen path, as a fraction of
            the glyph's size (0: the font's exact shape).
        max_rotation: largest rotation in degrees.
        max_shear: largest horizontal shear (slant), as ``dx / dy``.
        max_stretch: largest aspect change of the glyph's shape, as a factor (1.3: up to
            30 % wider or taller).
        min_width: thinnest pen, in pixels of a 28-pixel image (``varied``: 1, a hairline;
            ``mnist``: 2).
        max_width: thickest pen, in pixels of a 28-pixel image (``varied``: 5, a marker;
            ``mnist``: 3.5).
        hand_fraction: share of samples drawn from the hand-drawn variants of
            :data:`~lightning_synth.rendering.handwriting.HAND_ALLOGRAPHS` (open 4s,
            straight-stemmed 9s, bare 1s, ...) instead of a Hershey font.
        edge_softness: width in pixels over which the pen's edge fades (1: a crisp,
            anti-aliased edge; larger: the blurred edges of scanned handwriting).
        style: ``varied`` or ``mnist``, the ranges the arguments below default to.
        fill: share of the frame the digit's longer side spans, as ``(smallest, largest)``
            (``varied``: 0.55 to 1, loose crops to tight ones; ``mnist``: 0.61 to 0.71).
        stretch_fraction: share of digits stretched so that both sides span the box (aspect
            not kept, as Semeion's digits; ``varied``: 0.2).
        mass_centring: share of digits centred by their centre of mass, as MNIST's, rather
            than by their bounding box (``varied``: 0.5; ``mnist``: 1).
        max_blur: largest Gaussian blur sigma in pixels of a 28-pixel image
            (``varied``: 1.2; ``mnist``: 0).
        binarize_fraction: share of digits with two levels only, as bilevel scans
            (``varied``: 0.2).
        low_res_fraction: share of digits stored at ``min_resolution`` to ``image_size``
            pixels and resized back up (``varied``: 0.3).
        min_resolution: fewest pixels the digit's longer side keeps when stored small (8:
            scikit-learn's digits fill 8 x 8).
        max_background: largest level of the ground away from black or white
            (``varied``: 0.25; ``mnist``: 0).
        min_contrast: smallest difference between ink and ground (``varied``: 0.6;
            ``mnist``: 1).
        dark_on_light: share of digits dark on a light ground (both styles: 0, light on
            dark as digit sets are stored; 1 for photographs or scans of paper).
        max_noise: largest standard deviation of Gaussian pixel noise (``varied``: 0.04).
    """

    def __init__(
        self,
        length: int = 50_000,
        image_size: int = 28,
        seed: int = 0,
        channels: Literal[1, 3] = 1,
        fonts: Sequence[str] | None = None,
        jitter: float = 0.04,
        max_rotation: float = 15.0,
        max_shear: float = 0.4,
        max_stretch: float = 1.3,
        min_width: float | None = None,
        max_width: float | None = None,
        hand_fraction: float = 0.75,
        edge_softness: float = 1.5,
        style: StrokeStyleName = "varied",
        fill: tuple[float, float] | None = None,
        stretch_fraction: float | None = None,
        mass_centring: float | None = None,
        max_blur: float | None = None,
        binarize_fraction: float | None = None,
        low_res_fraction: float | None = None,
        min_resolution: int = 8,
        max_background: float | None = None,
        min_contrast: float | None = None,
        dark_on_light: float | None = None,
        max_noise: float | None = None,
    ) -> None:
        _check(length >= 0, f"length must be >= 0, got {length}")
        _check(image_size >= 8, f"image_size must be at least 8, got {image_size}")
        _check(channels in (1, 3), f"channels must be 1 or 3, got {channels}")
        _check(jitter >= 0, f"jitter must be >= 0, got {jitter}")
        _check(max_stretch >= 1, f"max_stretch must be >= 1, got {max_stretch}")
        _check(0 <= hand_fraction <= 1, f"hand_fraction must be in [0, 1], got {hand_fraction}")
        _check(edge_softness > 0, f"edge_softness must be > 0, got {edge_softness}")
        _check(
            style in STROKE_STYLES, f"style must be one of {sorted(STROKE_STYLES)}, got {style!r}"
        )
        _check(min_resolution >= 2, f"min_resolution must be at least 2, got {min_resolution}")
        base = STROKE_STYLES[style]
        self.style: StrokeStyle = base.with_overrides(
            fill=tuple(fill) if fill is not None else None,
            width=(
                min_width if min_width is not None else base.width[0],
                max_width if max_width is not None else base.width[1],
            ),
            stretch_fraction=stretch_fraction,
            mass_centring=mass_centring,
            max_blur=max_blur,
            binarize_fraction=binarize_fraction,
            low_res_fraction=low_res_fraction,
            max_background=max_background,
            min_contrast=min_contrast,
            dark_on_light=dark_on_light,
            max_noise=max_noise,
        )
        self.fonts = tuple(fonts) if fonts else STROKE_FONTS
        _check(len(self.fonts) > 0, "fonts must name at least one Hershey font")
        self.glyphs = [digit_strokes(font) for font in self.fonts]  # fails early on a typo
        self.length, self.image_size, self.seed, self.channels = length, image_size, seed, channels
        self.jitter, self.max_rotation = float(jitter), float(max_rotation)
        self.max_shear, self.max_stretch = float(max_shear), float(max_stretch)
        self.hand_fraction, self.edge_softness = float(hand_fraction), float(edge_softness)
        self.min_resolution = int(min_resolution)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.__getitems__([index])[0]
        return image, label

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        indices = [self._checked(i) for i in indices]
        if not indices:
            return []
        looks = [self._look(i) for i in indices]
        drawn = [self._path(i, look) for i, look in zip(indices, looks, strict=True)]
        paths, widths, margins = zip(*drawn, strict=True)
        size = self.image_size
        for look, (room_x, room_y) in zip(looks, margins, strict=True):
            share = 1 - 2 * min(room_x, room_y) / size  # the digit's longer side
            look["low_res"] = low_resolution_side(
                *look["low_res"], self.min_resolution, size, share
            )
        ink = self._stroke(
            list(paths),
            torch.tensor(widths, dtype=torch.float32),
            torch.tensor([look["by_mass"] for look in looks]),
            torch.tensor(margins, dtype=torch.float32),
        )
        images = self._finish(ink, looks)
        images = images[:, None].expand(-1, self.channels, -1, -1).contiguous()
        return [(images[k], i % 10) for k, i in enumerate(indices)]

    def _checked(self, index: int) -> int:
        index = operator.index(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for StrokeDigits of length {self.length}")
        return index

    def _look(self, index: int) -> dict:
        """The appearance of sample ``index``, from a generator of its own.

        The shape's generator (``_path``) stays as it was before styles existed, so the
        ``mnist`` style renders the same images; a fixed number of draws here keeps each
        factor independent of the others' outcomes.
        """
        style, size = self.style, self.image_size
        rng = np.random.default_rng((self.seed, index, 1))
        u = rng.random(11)
        background = style.max_background * u[5] ** 2
        room = 1.0 - background  # the ink's level cannot pass the extreme
        contrast = min(style.min_contrast, room) + u[6] * max(room - style.min_contrast, 0.0)
        look = {
            "stretch": bool(u[0] < style.stretch_fraction),
            "by_mass": bool(u[1] < style.mass_centring),
            "blur": style.max_blur * size / _REFERENCE_SIZE * u[2] ** 2,
            "threshold": 0.35 + 0.3 * u[4] if u[3] < style.binarize_fraction else math.nan,
            "low_res": (bool(u[9] < style.low_res_fraction), float(u[10])),
            "background": background,
            "ink": background + contrast,
            "dark": bool(u[7] < style.dark_on_light),
            "noise": None,
        }
        sigma = style.max_noise * u[8]
        if sigma > 0.004:  # below 1/255 it would vanish in any 8-bit copy
            look["noise"] = rng.standard_normal((size, size), dtype=np.float32) * np.float32(sigma)
        return look

    def _path(self, index: int, look: dict) -> tuple[np.ndarray, float, tuple[float, float]]:
        """Segments of sample ``index`` in pixels, its pen width in pixels, and the room
        between its inked box and the border (x, y) in pixels."""
        rng = np.random.default_rng((self.seed, index))
        # A fixed number of draws, whatever the choice, so the later draws do not depend
        # on the number of fonts or variants.
        by_hand, pick = rng.random() < self.hand_fraction, rng.random()
        if by_hand:  # drawn at its own width: no font-to-handwriting narrowing
            variants = hand_digit_strokes()[index % 10]
            segments = variants[int(pick * len(variants))]
        else:
            segments = self.glyphs[int(pick * len(self.glyphs))][index % 10]
        points = segments.reshape(-1, 2).astype(np.float64)
        low, high = points.min(0), points.max(0)
        # Normalised by height so that a glyph's own width survives.
        points = (points - (low + high) / 2) / max(float(high[1] - low[1]), 1e-6)
        if self.jitter > 0:  # a smooth displacement field: low cosine modes over the glyph
            modes = np.arange(3)
            coefficients = rng.normal(0.0, self.jitter, size=(2, 3, 3))
            basis_x = np.cos(math.pi * modes[None, :] * (points[:, :1] + 0.5))  # P x 3
            basis_y = np.cos(math.pi * modes[None, :] * (points[:, 1:] + 0.5))
            field = np.einsum("pa,pb,cab->pc", basis_x, basis_y, coefficients)
            points = points + field
        angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation))
        shear = rng.uniform(-self.max_shear, self.max_shear)
        stretch = math.exp(rng.uniform(-1, 1) * math.log(self.max_stretch))
        rotation = np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        narrowing = 1.0 if by_hand else math.sqrt(_HANDWRITING_ASPECT)
        aspect = np.diag([stretch * narrowing, 1 / stretch])
        affine = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ aspect
        points = points @ affine.T
        low, high = points.min(0), points.max(0)
        size = self.image_size
        smallest, largest = self.style.fill
        width = rng.uniform(*self.style.width) * size / _REFERENCE_SIZE
        # The inked box, pen included, spans `largest` of the frame on its longer side,
        # shrunk by a factor down to smallest / largest.
        extent = np.maximum(high - low, 1e-6)
        scale = (largest * size - width) / float(extent.max())
        if look["stretch"]:  # the shorter side spans the box too, within reason
            scale = np.minimum(scale * extent.max() / extent, scale * MAX_FILL_STRETCH)
        points = (points - (low + high) / 2) * scale * rng.uniform(smallest / largest, 1.0)
        half = (points.max(0) - points.min(0)) / 2 + width / 2
        points = points + size / 2
        margins = (max(size / 2 - float(half[0]), 0.0), max(size / 2 - float(half[1]), 0.0))
        return points.reshape(-1, 2, 2).astype(np.float32), width, margins

    def _stroke(
        self,
        paths: list[np.ndarray],
        widths: torch.Tensor,
        by_mass: torch.Tensor,
        margins: torch.Tensor,
    ) -> torch.Tensor:
        """``B x S x S`` anti-aliased pen strokes; the images ``by_mass`` marks are moved
        so that their centre of mass is the middle, by at most their ``margins`` (x, y)."""
        size = self.image_size
        centres = torch.arange(size, dtype=torch.float32) + 0.5
        distance = _distance_to_paths(paths, size)
        edge = (widths[:, None] / 2 - distance) / self.edge_softness
        ink = (edge + 0.5).clamp(0, 1).view(-1, size, size)
        if not bool(by_mass.any()):
            return ink
        # Centre of mass to the middle, as MNIST's preprocessing does, without pushing
        # the digit past the border.
        mass = ink.sum((1, 2)).clamp_min(1e-6)
        row = (ink.sum(2) * centres).sum(1) / mass
        col = (ink.sum(1) * centres).sum(1) / mass
        shift_x = torch.minimum(torch.maximum(col - size / 2, -margins[:, 0]), margins[:, 0])
        shift_y = torch.minimum(torch.maximum(row - size / 2, -margins[:, 1]), margins[:, 1])
        theta = torch.zeros(len(ink), 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, 0, 2] = torch.where(by_mass, shift_x, 0.0) * 2 / size
        theta[:, 1, 2] = torch.where(by_mass, shift_y, 0.0) * 2 / size
        grid = F.affine_grid(theta, [len(ink), 1, size, size], align_corners=False)
        return F.grid_sample(ink[:, None], grid, align_corners=False)[:, 0].clamp(0, 1)

    def _finish(self, ink: torch.Tensor, looks: list[dict]) -> torch.Tensor:
        """Blur, binarise, resolution, levels, polarity and noise of ``B x S x S`` ink."""
        ink = gaussian_blur(ink, _floats([look["blur"] for look in looks]))
        ink = binarize(ink, _floats([look["threshold"] for look in looks]))
        sides = torch.tensor([look["low_res"] for look in looks])
        if bool((sides > 0).any()):
            ink = low_resolution(ink[:, None], sides)[:, 0]
        background = _floats([look["background"] for look in looks])[:, None, None]
        level = _floats([look["ink"] for look in looks])[:, None, None]
        if bool((background != 0).any() or (level != 1).any()):
            ink = background + (level - background) * ink
        dark = torch.tensor([look["dark"] for look in looks])
        if bool(dark.any()):
            ink = torch.where(dark[:, None, None], 1 - ink, ink)
        noisy = [k for k, look in enumerate(looks) if look["noise"] is not None]
        if noisy:
            noise = torch.from_numpy(np.stack([looks[k]["noise"] for k in noisy]))
            ink[noisy] = (ink[noisy] + noise).clamp(0, 1)
        return ink


def _distance_to_paths(paths: list[np.ndarray], size: int, group: int = 32) -> torch.Tensor:
    """``B x size²`` distance from each pixel centre to the nearest segment of its path.

    Paths of similar length are grouped so that little padding is computed; x and y stay
    separate ``B x P x N`` tensors updated in place (with stacked ``B x P x N x 2`` pairs
    and fresh temporaries the same work ran about 19x slower, memory-bound).
    """
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    pixel_x = centres.repeat(size)[None, :, None]  # row-major: x varies fastest
    pixel_y = centres.repeat_interleave(size)[None, :, None]
    distance = torch.empty(len(paths), size * size)
    order = np.argsort([len(path) for path in paths], kind="stable")
    for members in np.array_split(order, max(1, math.ceil(len(paths) / group))):
        count = max(len(paths[k]) for k in members)
        # Padding with copies of the first segment leaves the minimum unchanged.
        padded = torch.from_numpy(
            np.stack(
                [
                    np.concatenate([paths[k], np.repeat(paths[k][:1], count - len(paths[k]), 0)])
                    for k in members
                ]
            )
        )  # G x N x 2 (ends) x 2 (x, y)
        start_x, start_y = padded[:, None, :, 0, 0], padded[:, None, :, 0, 1]  # G x 1 x N
        along_x = padded[:, None, :, 1, 0] - start_x
        along_y = padded[:, None, :, 1, 1] - start_y
        inverse_length2 = 1 / (along_x.square() + along_y.square()).clamp_min(1e-12)
        offset_x, offset_y = pixel_x - start_x, pixel_y - start_y  # G x P x N
        t = (offset_x * along_x).add_(offset_y * along_y).mul_(inverse_length2).clamp_(0, 1)
        offset_x.sub_(t * along_x).square_()
        offset_y.sub_(t.mul_(along_y)).square_()
        distance[torch.from_numpy(members)] = offset_x.add_(offset_y).amin(-1).sqrt_()
    return distance


def _floats(values: list[float]) -> torch.Tensor:
    # numpy's float64 scalars would make a float64 tensor, and float64 images
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
