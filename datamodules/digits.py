"""``RenderedDigitsSource``: the digit renderer as the rendered domain of a DataModule."""

from __future__ import annotations

from typing import Literal

from lightning_synth.batch import Stage
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.rendering.digits import RenderedDigits

__all__ = ["RenderedDigitsSource"]

# Each stage renders from its own seed, so train, val and test never share an image.
_STAGE_SEED_OFFSET: dict[str, int] = {"train": 0, "val": 1_000_003, "test": 2_000_003}


class RenderedDigitsSource(DomainSource):
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
        self.lengths = {"train": train_length, "val": val_length, "test": test_length}
        self.options = {
            "image_size": image_size,
            "channels": channels,
            "fonts": fonts,
            "max_rotation": max_rotation,
            "neighbor_prob": neighbor_prob,
            "max_blur": max_blur,
            "max_noise": max_noise,
        }
        self.seed = seed
        # Build one renderer now so that bad arguments fail at config time, not mid-fit.
        self.dataset("val")

    def dataset(self, stage: Stage) -> RenderedDigits:
        return RenderedDigits(
            length=self.lengths[stage], seed=self.seed + _STAGE_SEED_OFFSET[stage], **self.options
        )
