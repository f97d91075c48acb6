"""``MixedDomainDataModule``: rendered and real images in every training batch."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lightning_synth.batch import IMAGE, Batch, Stage
from lightning_synth.datamodules.base import DomainDataModule
from lightning_synth.datamodules.datasets import DomainDataset, InterleavedDataset
from lightning_synth.datamodules.framing import CanonicalFraming
from lightning_synth.datamodules.sampling import (
    MixedDomainSampler,
    ResumableDataLoader,
    ResumesMidEpoch,
)
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.errors import InputError
from lightning_synth.image_io import to_channels

__all__ = [
    "MixedDomainDataModule",
    "ImageFormat",
    "to_format",
    # defined elsewhere in this package, importable from here as before
    "MixedDomainSampler",
    "ResumableDataLoader",
    "ResumesMidEpoch",
    "DomainDataset",
    "InterleavedDataset",
]


def _check_image(image: torch.Tensor) -> None:
    if image.ndim != 3:
        raise InputError(
            f"a source yielded an image of shape {tuple(image.shape)}; expected C x H x W"
        )


def to_format(image: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Bring a ``C x H x W`` image in [0, 1] to ``channels x image_size x image_size``.

    Args:
        image: float image in [0, 1].
        image_size: output height and width.
        channels: 1 (luma, ITU-R BT.601: see :mod:`lightning_synth.image_io`) or 3 (gray
            images are repeated).
    """
    _check_image(image)
    image = to_channels(image, channels)
    if image.shape[1:] != (image_size, image_size):
        image = F.interpolate(
            image[None],
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0].clamp(0, 1)
    return image.contiguous()


class ImageFormat:
    """Brings the images of a list of samples to ``channels x image_size x image_size``:
    resized (:func:`to_format`), or framed canonically (:class:`CanonicalFraming`) from
    the source's own resolution, images of one size framed together.

    Args:
        image_size: output height and width.
        channels: output channels.
        framing: frames the images; ``None`` only resizes them.
    """

    def __init__(
        self, image_size: int, channels: int, framing: CanonicalFraming | None = None
    ) -> None:
        self.image_size, self.channels, self.framing = image_size, channels, framing

    def __call__(self, items: list[Batch]) -> list[Batch]:
        if self.framing is None:
            for item in items:
                item[IMAGE] = to_format(item[IMAGE], self.image_size, self.channels)
            return items
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, item in enumerate(items):
            _check_image(item[IMAGE])
            groups.setdefault(tuple(item[IMAGE].shape), []).append(k)
        for members in groups.values():
            images = torch.stack([items[k][IMAGE] for k in members])
            framed = self.framing(to_channels(images, self.channels))
            for k, image in zip(members, framed, strict=True):
                items[k][IMAGE] = image.contiguous()
        return items


class MixedDomainDataModule(DomainDataModule):
    """Rendered and real images in every training batch; each domain reported apart.

    Training batches hold ``round(batch_size * real_fraction)`` real samples and the
    rest rendered. Validation and test sets interleave both domains, each sample
    carrying its ``domain`` flag, so tasks report ``val/rendered_*`` and ``val/real_*``.
    Real labels are kept for validation and test (they measure the gap), and hidden
    in training when ``hide_real_labels`` is set (unsupervised adaptation).
    ``predict`` runs over the real test set.

    Args:
        rendered: source of rendered images (domain 0).
        real: source of real images (domain 1).
        image_size: both domains are resized to this height and width.
        channels: both domains are converted to this many channels (colour to gray by
            ITU-R BT.601 luma, as Pillow and torchvision do).
        batch_size: samples per batch and process.
        real_fraction: fraction of every training batch drawn from the real domain.
        hide_real_labels: hide real training labels (``-1``): unsupervised adaptation.
        num_workers: DataLoader worker processes per training process.
        seed: seed of the batch composition (the epoch is added).
        framing: ``none`` resizes each image whole; ``canonical`` frames every image of
            both domains and every stage as MNIST was made: cropped to the ink's bounding
            box, scaled into a ``framing_box`` square keeping its aspect, and centred by
            the ink's centre of mass. Use it when the real digits are framed unlike the
            renderer's (tight crops that fill the frame, wide margins) or framed in a way
            you do not know.
        framing_box: side in pixels of the square the ink is scaled into; ``None``:
            MNIST's proportion, 20 pixels of 28 (``round(image_size * 20 / 28)``).
        framing_threshold: a pixel counts as ink for the bounding box when it lies this
            fraction of the image's intensity range away from the background.
    """

    def __init__(
        self,
        rendered: DomainSource,
        real: DomainSource,
        image_size: int = 32,
        channels: Literal[1, 3] = 3,
        batch_size: int = 64,
        real_fraction: float = 0.5,
        hide_real_labels: bool = False,
        num_workers: int = 2,
        seed: int = 0,
        framing: Literal["none", "canonical"] = "none",
        framing_box: int | None = None,
        framing_threshold: float = 0.3,
    ) -> None:
        super().__init__(
            rendered,
            real,
            batch_size=batch_size,
            real_fraction=real_fraction,
            hide_real_labels=hide_real_labels,
            num_workers=num_workers,
            seed=seed,
        )
        if image_size < 8:
            raise InputError(f"image_size must be at least 8 pixels, got {image_size}")
        if framing not in ("none", "canonical"):
            raise InputError(f"framing must be 'none' or 'canonical', got {framing!r}")
        self.image_size = image_size
        self.channels = channels
        self.framing = framing
        framer = None
        if framing == "canonical":
            framer = CanonicalFraming(image_size, box=framing_box, threshold=framing_threshold)
        self._format = ImageFormat(image_size, channels, framer)

    def transform(self, stage: Stage, domain: int) -> ImageFormat:
        return self._format
