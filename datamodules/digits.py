"""Digit renderers as the rendered domain of a DataModule: printed fonts
(``RenderedDigitsSource``) and handwriting-like pen strokes (``StrokeDigitsSource``)."""

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
        }
        super().__init__(lengths, seed, options)


class StrokeDigitsSource(_RendererSource):
    """Handwriting-like digits (:class:`~lightning_synth.rendering.StrokeDigits`): hand-drawn
    and Hershey pen paths bent, slanted and stroked at random, framed like MNIST; split by
    seed.

    The rendered domain to pair with handwritten real digits (MNIST, scans of forms):
    printed fonts differ from handwriting in shape, which no feature alignment undoes.

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
        max_stretch: largest aspect change factor.
        min_width: thinnest pen in pixels of a 28-pixel image.
        max_width: thickest pen in pixels of a 28-pixel image.
        polarity: ``light_on_dark`` (MNIST) or ``dark_on_light``.
        hand_fraction: share of samples drawn from the built-in hand-drawn digit shapes
            (open 4s, straight-stemmed 9s, ...) rather than a Hershey font.
        edge_softness: pixels over which the pen's edge fades.
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
        min_width: float = 2.0,
        max_width: float = 3.5,
        polarity: Literal["light_on_dark", "dark_on_light"] = "light_on_dark",
        hand_fraction: float = 0.75,
        edge_softness: float = 1.5,
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
            "polarity": polarity,
            "hand_fraction": hand_fraction,
            "edge_softness": edge_softness,
        }
        super().__init__(lengths, seed, options)
