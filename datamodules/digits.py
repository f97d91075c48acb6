"""Digit renderers as the rendered domain of a DataModule: printed fonts
(``RenderedDigitsSource``) and handwriting-like pen strokes (``StrokeDigitsSource``).

Both render, by default, a ``varied`` style whose framing, pen width, levels, blur and
resolution cover how common real digit sets were made
(:mod:`lightning_synth.rendering.digit_style`); every range is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from lightning_synth.batch import Stage
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.rendering.digits import RenderedDigits
from lightning_synth.rendering.strokes import StrokeDigits

__all__ = ["RenderedDigitsSource", "StrokeDigitsSource"]

# Each stage renders from its own seed, so train, val and test never share an image.
_STAGE_SEED_OFFSET: dict[str, int] = {"train": 0, "val": 1_000_003, "test": 2_000_003}


class _RendererSource(DomainSource):
    """A renderer dataset class as a source: one instance per stage, seeds kept apart."""

    renderer: type[RenderedDigits] | type[StrokeDigits]

    def __init__(self, lengths: dict[str, int], seed: int, options: dict[str, object]) -> None:
        self.lengths, self.seed, self.options = lengths, seed, options
        # Build one renderer now so that bad arguments fail at config time, not mid-fit.
        self.dataset("val")

    def dataset(self, stage: Stage) -> RenderedDigits | StrokeDigits:
        return self.renderer(
            length=self.lengths[stage], seed=self.seed + _STAGE_SEED_OFFSET[stage], **self.options
        )


class RenderedDigitsSource(_RendererSource):
    """Rendered digits 0-9 (:class:`~lightning_synth.rendering.RenderedDigits`), split by seed.

    Args:
        train_length: rendered training images per epoch (virtual: made on demand).
        val_length: rendered validation images.
        test_length: rendered test images.
        image_size: side of the rendered images (render at the DataModule's size to skip a resize).
        channels: 1 (gray) or 3 (colour).
        seed: base seed; the stages use disjoint seeds derived from it.
        fonts: TrueType files to draw with; all of matplotlib's digit-capable fonts when ``None``.
        max_rotation: largest rotation in degrees.
        neighbor_prob: probability of cut-off neighbouring digits at the borders.
        max_blur: largest Gaussian blur radius in pixels.
        max_noise: largest standard deviation of the added pixel noise.
        style: ``varied`` (default) or ``syndigits`` (house-number crops only, as this
            source rendered before it had styles): the ranges of the arguments below.
        fill: range of the share of the image height the digits span (``None``: the
            style's; ``varied``: 0.5 to 1, up to tight crops).
        stretch_fraction: share of digits widened to be as wide as tall (``varied``: 0.2).
        weights: stroke change range in pixels of a 64-pixel font (``varied``: -2 to 4).
        max_shear: largest slant, ``dx / dy`` (``varied``: 0.3; ``syndigits``: 0.2).
        binarize_fraction: share of digits in two flat colours (``varied``: 0.2).
        low_res_fraction: share of digits stored small and resized up (``varied``: 0.2).
        min_resolution: fewest pixels the digit's longer side keeps when stored small (8:
            scikit-learn's digits fill 8 x 8).
    """

    renderer = RenderedDigits

    def __init__(
        self,
        train_length: int = 50_000,
        val_length: int = 1_000,
        test_length: int = 1_000,
        image_size: int = 32,
        channels: Literal[1, 3] = 3,
        seed: int = 0,
        fonts: list[str] | None = None,
        max_rotation: float = 15.0,
        neighbor_prob: float = 0.3,
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
        lengths = {"train": train_length, "val": val_length, "test": test_length}
        options = {
            "image_size": image_size,
            "channels": channels,
            "fonts": fonts,
            "max_rotation": max_rotation,
            "neighbor_prob": neighbor_prob,
            "max_blur": max_blur,
            "max_noise": max_noise,
            "style": style,
            "fill": fill,
            "stretch_fraction": stretch_fraction,
            "weights": weights,
            "max_shear": max_shear,
            "binarize_fraction": binarize_fraction,
            "low_res_fraction": low_res_fraction,
            "min_resolution": min_resolution,
        }
        super().__init__(lengths, seed, options)


class StrokeDigitsSource(_RendererSource):
    """Handwriting-like digits (:class:`~lightning_synth.rendering.StrokeDigits`): hand-drawn
    and Hershey pen paths bent, slanted and stroked at random, then framed and finished as
    real digit sets vary; split by seed.

    The rendered domain to pair with handwritten real digits (MNIST, USPS, scans of
    forms, your own ``DigitFolder``): printed fonts differ from handwriting in shape,
    which no feature alignment undoes. The default ``varied`` style covers framings from
    MNIST's centred 20-pixel box to crops that fill the frame, pens from hairline to bold,
    grey or bilevel strokes, blur, low resolutions and grey grounds, light ink on a dark
    ground as digit sets are stored (``dark_on_light: 1`` for photographs of paper);
    ``style: mnist`` renders as MNIST alone is made (as this source did before it had
    styles). Each range below left at ``None`` is the style's.

    Args:
        train_length: rendered training images per epoch (virtual: made on demand).
        val_length: rendered validation images.
        test_length: rendered test images.
        image_size: side of the rendered images.
        channels: 1 (gray) or 3 (gray repeated).
        seed: base seed; the stages use disjoint seeds derived from it.
        fonts: Hershey font names; ``None``: ten with distinct digit shapes.
        jitter: bending of the pen path, as a fraction of the glyph size.
        max_rotation: largest rotation in degrees.
        max_shear: largest slant (``dx / dy``).
        max_stretch: largest aspect change factor of the glyph's shape.
        min_width: thinnest pen in pixels of a 28-pixel image (``varied``: 1; ``mnist``: 2).
        max_width: thickest pen in pixels of a 28-pixel image (``varied``: 5; ``mnist``: 3.5).
        hand_fraction: share of samples drawn from the built-in hand-drawn digit shapes
            (open 4s, straight-stemmed 9s, ...) rather than a Hershey font.
        edge_softness: pixels over which the pen's edge fades.
        style: ``varied`` (default) or ``mnist``: the ranges the ``None`` arguments take.
        fill: range of the share of the frame the digit's longer side spans (``varied``:
            0.55 to 1; ``mnist``: 0.61 to 0.71, its 20-pixel box).
        stretch_fraction: share of digits stretched to fill the box both ways, aspect not
            kept (``varied``: 0.2).
        mass_centring: share centred by centre of mass rather than bounding box
            (``varied``: 0.5; ``mnist``: 1).
        max_blur: largest Gaussian blur sigma, pixels of a 28-pixel image (``varied``: 1.2).
        binarize_fraction: share of digits with two levels only (``varied``: 0.2).
        low_res_fraction: share stored at ``min_resolution`` to ``image_size`` pixels and
            resized back up (``varied``: 0.3).
        min_resolution: fewest pixels the digit's longer side keeps when stored small (8:
            scikit-learn's digits fill 8 x 8).
        max_background: largest ground level away from black or white (``varied``: 0.25).
        min_contrast: smallest ink-to-ground difference (``varied``: 0.6; ``mnist``: 1).
        dark_on_light: share of dark digits on a light ground (0: light on dark, as digit
            sets are stored; 1 for photographs or scans of paper).
        max_noise: largest Gaussian pixel-noise standard deviation (``varied``: 0.04).
    """

    renderer = StrokeDigits

    def __init__(
        self,
        train_length: int = 50_000,
        val_length: int = 1_000,
        test_length: int = 1_000,
        image_size: int = 28,
        channels: Literal[1, 3] = 1,
        seed: int = 0,
        fonts: Sequence[str] | None = None,
        jitter: float = 0.04,
        max_rotation: float = 15.0,
        max_shear: float = 0.4,
        max_stretch: float = 1.3,
        min_width: float | None = None,
        max_width: float | None = None,
        hand_fraction: float = 0.75,
        edge_softness: float = 1.5,
        style: Literal["varied", "mnist"] = "varied",
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
        lengths = {"train": train_length, "val": val_length, "test": test_length}
        options = {
            "image_size": image_size,
            "channels": channels,
            "fonts": list(fonts) if fonts else None,
            "jitter": jitter,
            "max_rotation": max_rotation,
            "max_shear": max_shear,
            "max_stretch": max_stretch,
            "min_width": min_width,
            "max_width": max_width,
            "hand_fraction": hand_fraction,
            "edge_softness": edge_softness,
            "style": style,
            "fill": fill,
            "stretch_fraction": stretch_fraction,
            "mass_centring": mass_centring,
            "max_blur": max_blur,
            "binarize_fraction": binarize_fraction,
            "low_res_fraction": low_res_fraction,
            "min_resolution": min_resolution,
            "max_background": max_background,
            "min_contrast": min_contrast,
            "dark_on_light": dark_on_light,
            "max_noise": max_noise,
        }
        super().__init__(lengths, seed, options)
