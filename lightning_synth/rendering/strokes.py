"""Handwriting-like digits drawn as pen paths: hand-drawn shapes and Hershey fonts.

Printed TrueType glyphs (:class:`~lightning_synth.rendering.RenderedDigits`) differ from
handwriting in shape more than in texture: serifs, closed 4s, flat-topped 7s, uniform
stroke weight. Hershey fonts describe each glyph as the pen's path, and
:mod:`~lightning_synth.rendering.handwriting` adds hand-drawn paths in the shapes people
write (open 4s, straight-stemmed 9s, ...), so a digit can be drawn the way a hand draws
it: the path is bent by a smooth random displacement, slanted, rotated and stretched, and
stroked with a soft-edged pen of random width. The result is framed like MNIST: light
strokes on black, the digit scaled into a 20/28 box and centred by its centre of mass.

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
#: Fraction of the image the digit's larger side fills (MNIST: 20 of 28 pixels).
_BOX_FRACTION = 20 / 28
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
    """Handwriting-like digits 0-9, MNIST-framed, made on demand.

    Sample ``i`` has label ``i % 10`` and depends only on ``(seed, i)``, whatever the
    batch it is fetched in. A DataLoader fetches batches through ``__getitems__``, which
    strokes the whole batch at once.

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
        max_stretch: largest aspect change, as a factor (1.3: up to 30 % wider or taller).
        min_width: thinnest pen, in pixels of a 28-pixel image.
        max_width: thickest pen, in pixels of a 28-pixel image.
        polarity: ``light_on_dark`` (MNIST) or ``dark_on_light`` (ink on paper).
        hand_fraction: share of samples drawn from the hand-drawn variants of
            :data:`~lightning_synth.rendering.handwriting.HAND_ALLOGRAPHS` (open 4s,
            straight-stemmed 9s, bare 1s, ...) instead of a Hershey font.
        edge_softness: width in pixels over which the pen's edge fades (1: a crisp,
            anti-aliased edge; larger: the blurred edges of scanned handwriting).
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
        min_width: float = 2.0,
        max_width: float = 3.5,
        polarity: Literal["light_on_dark", "dark_on_light"] = "light_on_dark",
        hand_fraction: float = 0.75,
        edge_softness: float = 1.5,
    ) -> None:
        _check(length >= 0, f"length must be >= 0, got {length}")
        _check(image_size >= 8, f"image_size must be at least 8, got {image_size}")
        _check(channels in (1, 3), f"channels must be 1 or 3, got {channels}")
        _check(jitter >= 0, f"jitter must be >= 0, got {jitter}")
        _check(max_stretch >= 1, f"max_stretch must be >= 1, got {max_stretch}")
        _check(
            0 < min_width <= max_width,
            f"need 0 < min_width <= max_width, got {min_width} and {max_width}",
        )
        _check(
            polarity in ("light_on_dark", "dark_on_light"),
            f"polarity must be 'light_on_dark' or 'dark_on_light', got {polarity!r}",
        )
        _check(0 <= hand_fraction <= 1, f"hand_fraction must be in [0, 1], got {hand_fraction}")
        _check(edge_softness > 0, f"edge_softness must be > 0, got {edge_softness}")
        self.fonts = tuple(fonts) if fonts else STROKE_FONTS
        _check(len(self.fonts) > 0, "fonts must name at least one Hershey font")
        self.glyphs = [digit_strokes(font) for font in self.fonts]  # fails early on a typo
        self.length, self.image_size, self.seed, self.channels = length, image_size, seed, channels
        self.jitter, self.max_rotation = float(jitter), float(max_rotation)
        self.max_shear, self.max_stretch = float(max_shear), float(max_stretch)
        self.min_width, self.max_width = float(min_width), float(max_width)
        self.polarity = polarity
        self.hand_fraction, self.edge_softness = float(hand_fraction), float(edge_softness)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.__getitems__([index])[0]
        return image, label

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        indices = [self._checked(i) for i in indices]
        if not indices:
            return []
        paths, widths = zip(*(self._path(i) for i in indices), strict=True)
        images = self._stroke(list(paths), torch.tensor(widths, dtype=torch.float32))
        if self.polarity == "dark_on_light":
            images = 1 - images
        images = images[:, None].expand(-1, self.channels, -1, -1).contiguous()
        return [(images[k], i % 10) for k, i in enumerate(indices)]

    def _checked(self, index: int) -> int:
        index = operator.index(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for StrokeDigits of length {self.length}")
        return index

    def _path(self, index: int) -> tuple[np.ndarray, float]:
        """Segments of sample ``index`` in pixels, and its pen width in pixels."""
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
        width = rng.uniform(self.min_width, self.max_width) * size / _REFERENCE_SIZE
        # The inked box, pen included, fills the MNIST box on its longer side.
        scale = (_BOX_FRACTION * size - width) / max(float((high - low).max()), 1e-6)
        points = (points - (low + high) / 2) * scale * rng.uniform(0.85, 1.0) + size / 2
        return points.reshape(-1, 2, 2).astype(np.float32), width

    def _stroke(self, paths: list[np.ndarray], widths: torch.Tensor) -> torch.Tensor:
        """``B x S x S`` anti-aliased pen strokes, each image centred by its centre of mass."""
        size = self.image_size
        centres = torch.arange(size, dtype=torch.float32) + 0.5
        distance = _distance_to_paths(paths, size)
        edge = (widths[:, None] / 2 - distance) / self.edge_softness
        ink = (edge + 0.5).clamp(0, 1).view(-1, size, size)
        # Centre of mass to the middle, as MNIST's preprocessing does.
        mass = ink.sum((1, 2)).clamp_min(1e-6)
        row = (ink.sum(2) * centres).sum(1) / mass
        col = (ink.sum(1) * centres).sum(1) / mass
        theta = torch.zeros(len(ink), 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, 0, 2] = (col - size / 2) * 2 / size
        theta[:, 1, 2] = (row - size / 2) * 2 / size
        grid = F.affine_grid(theta, [len(ink), 1, size, size], align_corners=False)
        return F.grid_sample(ink[:, None], grid, align_corners=False)[:, 0].clamp(0, 1)


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


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
