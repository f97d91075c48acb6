"""Images to optimise: photographs to denoise, content and style images to combine.

An image is named by a file path (PNG or JPEG, 8 or 16 bit, gray or colour; alpha is
composited onto white; read by :func:`lightning_synth.image_io.read_image`), a folder (its PNG/JPEG files, sorted), a glob pattern, or ``skimage:NAME``
for one of scikit-image's bundled sample photographs (``skimage:camera``,
``skimage:astronaut``, ``skimage:coffee``, ...: they ship with the package, so
examples run offline).

For ``fit`` the tasks optimise the pixels of all images at once, so the training
dataloader yields *one* batch of all images, ``steps_per_epoch`` times per epoch (one
step is one iteration of the optimizer; stop with ``--trainer.max_steps``). Batches
follow the contract of :mod:`lightning_synth.batch`, with ``label`` -1 and ``domain``
real, plus ``reference`` (clean images, when known), ``style`` and ``name``.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lightning_synth.batch import (
    DOMAIN,
    IGNORE_LABEL,
    IMAGE,
    LABEL,
    NAME,
    REAL,
    REFERENCE,
    STYLE,
    Batch,
)
from lightning_synth.errors import InputError
from lightning_synth.image_io import read_image as read_image_file
from lightning_synth.image_io import to_channels, to_float

__all__ = [
    "SKIMAGE_PREFIX",
    "IMAGE_SUFFIXES",
    "read_image",
    "find_images",
    "resize_image",
    "ImageOptimizationDataModule",
    "StyleTransferDataModule",
]

SKIMAGE_PREFIX = "skimage:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

Size = int | tuple[int, int] | None


def find_images(sources: Sequence[str]) -> list[str]:
    """Expand folders and glob patterns into sorted image files; keep ``skimage:`` names.

    Args:
        sources: file paths, folders, glob patterns or ``skimage:NAME``.
    """
    found: list[str] = []
    for source in sources:
        path = Path(source).expanduser()
        if source.startswith(SKIMAGE_PREFIX) or path.is_file():
            found.append(source if source.startswith(SKIMAGE_PREFIX) else str(path))
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(
                    f"folder {source!r} has no {'/'.join(IMAGE_SUFFIXES)} files"
                )
            found += [str(p) for p in files]
        else:
            matches = sorted(glob.glob(str(path)))
            if not matches:
                raise FileNotFoundError(
                    f"no image {source!r}: expected a file, a folder, a glob pattern, or "
                    f"{SKIMAGE_PREFIX}NAME for a scikit-image sample (e.g. skimage:camera)"
                )
            found += matches
    return found


def read_image(source: str) -> torch.Tensor:
    """A ``C x H x W`` float32 image in [0, 1] (C is 1 or 3) from a file or ``skimage:NAME``.

    Args:
        source: path of a PNG/JPEG file (8 or 16 bit) or ``skimage:NAME``.
    """
    if not source.startswith(SKIMAGE_PREFIX):
        return read_image_file(source)
    array = _skimage_sample(source[len(SKIMAGE_PREFIX) :])
    image = torch.from_numpy(np.ascontiguousarray(array))
    image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
    return to_float(image, repr(source))


def _skimage_sample(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError as error:
        raise ImportError(
            f"{SKIMAGE_PREFIX}{name} needs scikit-image: pip install scikit-image"
        ) from error
    loader = getattr(skimage.data, name, None)
    if not callable(loader) or name.startswith("_"):
        raise InputError(
            f"scikit-image has no sample image {name!r}; bundled photographs include "
            f"astronaut, camera, cat, coffee, coins, hubble_deep_field, "
            f"immunohistochemistry, moon, page, rocket, text"
        )
    array = np.asarray(loader())
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim not in (2, 3):
        raise InputError(f"{SKIMAGE_PREFIX}{name} is not a 2-D image (shape {array.shape})")
    return array


def resize_image(
    image: torch.Tensor, size: Size, mode: Literal["bilinear", "bicubic"] = "bilinear"
) -> torch.Tensor:
    """Resize (antialiased) so the longer side is ``size``, or to exactly ``(H, W)``;
    the result is clipped to [0, 1].

    Args:
        image: ``C x H x W``.
        size: ``None`` (keep), an int (longer side, aspect kept) or ``(height, width)``.
        mode: interpolation; bicubic keeps more detail when enlarging.
    """
    if size is None:
        return image
    height, width = image.shape[-2:]
    if isinstance(size, int):
        scale = size / max(height, width)
        target = (max(1, round(height * scale)), max(1, round(width * scale)))
    else:
        target = (int(size[0]), int(size[1]))
    if target == (height, width):
        return image
    resized = F.interpolate(
        image[None], size=target, mode=mode, antialias=True, align_corners=False
    )
    return resized[0].clamp(0, 1)


def _to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    return to_channels(image, channels).contiguous()


def _name(source: str) -> str:
    if source.startswith(SKIMAGE_PREFIX):
        return source[len(SKIMAGE_PREFIX) :]
    return Path(source).stem


def _keep(batch: Any) -> Any:
    return batch


class _RepeatedBatch(IterableDataset):
    """The same batch, ``times`` times (one optimizer iteration each)."""

    def __init__(self, batch: Batch, times: int) -> None:
        self.batch = batch
        self.times = times

    def __iter__(self) -> Iterator[Batch]:
        for _ in range(self.times):
            yield self.batch


class _Samples(Dataset):
    def __init__(self, samples: list[Batch]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Batch:
        return self.samples[index]


class ImageOptimizationDataModule(LightningDataModule):
    """Images to denoise (or otherwise optimise), optionally with noise added.

    ``fit`` yields all images as one batch, ``steps_per_epoch`` times per epoch;
    ``test`` and ``predict`` yield them ``batch_size`` at a time (each image its own
    problem). With ``noise_sigma > 0`` the clean image becomes ``reference`` and the
    noisy one (clipped to [0, 1]) ``image``; with ``references`` the given clean files
    are the references.

    Args:
        images: files, folders, glob patterns or ``skimage:NAME`` samples.
        references: clean version of each image (same order), for PSNR/SSIM.
        noise_sigma: standard deviation of Gaussian noise to add (images in [0, 1]);
            0 uses the images as they are.
        seed: seed of the noise (image ``i`` uses ``seed + i``).
        size: ``None`` keeps the size; an int resizes so the longer side has that many
            pixels; ``[height, width]`` resizes exactly. ``fit`` needs equal sizes.
        gray: convert to one luma channel (ITU-R BT.601, as Pillow and torchvision);
            otherwise gray images become RGB when colour images are present.
        steps_per_epoch: optimizer iterations per training epoch.
        batch_size: images per batch in ``test`` and ``predict`` (they must share a size).
    """

    def __init__(
        self,
        images: Sequence[str] = ("skimage:camera",),
        references: Sequence[str] | None = None,
        noise_sigma: float = 0.0,
        seed: int = 0,
        size: int | tuple[int, int] | None = None,
        gray: bool = False,
        steps_per_epoch: int = 100,
        batch_size: int = 1,
    ) -> None:
        super().__init__()
        if noise_sigma < 0:
            raise InputError(f"noise_sigma must be >= 0, got {noise_sigma}")
        if steps_per_epoch < 1 or batch_size < 1:
            raise InputError("steps_per_epoch and batch_size must be at least 1")
        self.images = list(images)
        self.references = None if references is None else list(references)
        self.noise_sigma = noise_sigma
        self.seed = seed
        self.size = size
        self.gray = gray
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self._samples: list[Batch] | None = None
        self._fit_batch: Batch | None = None
        self._on_device: tuple[Batch, torch.device, Batch] | None = None

    # -- loading -------------------------------------------------------------------------
    def _load(self, sources: Sequence[str]) -> tuple[list[torch.Tensor], list[str]]:
        files = find_images(sources)
        images = [resize_image(read_image(source), self.size) for source in files]
        return images, [_name(source) for source in files]

    def _channels(self, images: Sequence[torch.Tensor]) -> int:
        return 1 if self.gray or all(image.shape[0] == 1 for image in images) else 3

    def samples(self) -> list[Batch]:
        """One sample per image: ``image``, ``reference`` (if known), ``label``, ``domain``,
        ``name``. Loaded once, then cached."""
        if self._samples is not None:
            return self._samples
        images, names = self._load(self.images)
        references = None
        if self.references is not None:
            references, _ = self._load(self.references)
            if len(references) != len(images):
                raise InputError(f"{len(references)} references for {len(images)} images")
            for name, image, reference in zip(names, images, references, strict=True):
                if image.shape[-2:] != reference.shape[-2:]:
                    raise InputError(f"the reference of {name!r} differs in size from it")
        channels = self._channels(images + (references or []))
        samples = []
        for index, (image, name) in enumerate(zip(images, names, strict=True)):
            image = _to_channels(image, channels)
            sample: Batch = {
                IMAGE: image,
                LABEL: torch.tensor(IGNORE_LABEL),
                DOMAIN: torch.tensor(REAL),
                NAME: name,  # type: ignore[dict-item]
            }
            if self.noise_sigma > 0:
                generator = torch.Generator().manual_seed(self.seed + index)
                noise = torch.randn(image.shape, generator=generator) * self.noise_sigma
                sample[IMAGE] = (image + noise).clamp(0, 1)
                sample[REFERENCE] = image
            if references is not None:
                sample[REFERENCE] = _to_channels(references[index], channels)
            samples.append(sample)
        self._samples = samples
        return samples

    def fit_batch(self) -> Batch:
        """All images as one batch (what every training step receives)."""
        if self._fit_batch is None:
            self._fit_batch = _stack(self.samples())
        return self._fit_batch

    # -- loaders ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self.samples()

    def train_dataloader(self) -> DataLoader:
        repeated = _RepeatedBatch(self.fit_batch(), self.steps_per_epoch)
        return DataLoader(repeated, batch_size=None, collate_fn=_keep)

    def test_dataloader(self) -> DataLoader:
        return self._each_image()

    def predict_dataloader(self) -> DataLoader:
        return self._each_image()

    def _each_image(self) -> DataLoader:
        # The images are decoded once, in this process: no worker processes needed.
        return DataLoader(_Samples(self.samples()), batch_size=self.batch_size)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # The training batch is the same every step: move it once, not once per step.
        cached = self._on_device
        if cached is not None and cached[0] is batch and cached[1] == device:
            return cached[2]
        moved = super().transfer_batch_to_device(batch, device, dataloader_idx)
        if batch is self._fit_batch:
            self._on_device = (batch, device, moved)
        return moved


def _stack(samples: list[Batch]) -> Batch:
    sizes = {tuple(sample[IMAGE].shape) for sample in samples}
    if len(sizes) > 1:
        raise InputError(
            f"fit optimises all images as one batch, so they must share a size; got "
            f"{sorted(sizes)}: set size: [height, width]"
        )
    batch: Batch = {
        key: torch.stack([sample[key] for sample in samples])
        for key in samples[0]
        if isinstance(samples[0][key], torch.Tensor)
    }
    batch[NAME] = [sample[NAME] for sample in samples]  # type: ignore[assignment]
    return batch


class StyleTransferDataModule(ImageOptimizationDataModule):
    """Content images and style images for neural style transfer (one batch, all stages).

    Each style image is cropped (centred) to the content's aspect ratio and resized to
    ``style_scale`` times the content size, so its brush strokes keep their shape.

    Args:
        content: content images (files, folders, globs or ``skimage:NAME``); they are
            optimised together, so they must share a size (see ``size``).
        styles: style images; several are blended (see the task's ``style_blend``).
        size: output size: an int for the longer side, ``[height, width]``, or ``None``
            for the content image's own size.
        style_scale: size of the style images relative to the output.
        gray: work in one luminance channel.
        steps_per_epoch: optimizer iterations per training epoch.
    """

    def __init__(
        self,
        content: Sequence[str] = ("skimage:astronaut",),
        styles: Sequence[str] = ("skimage:immunohistochemistry",),
        size: int | tuple[int, int] | None = 256,
        style_scale: float = 1.0,
        gray: bool = False,
        steps_per_epoch: int = 100,
    ) -> None:
        if not styles:
            raise InputError("give at least one style image")
        if style_scale <= 0:
            raise InputError(f"style_scale must be positive, got {style_scale}")
        super().__init__(images=content, size=size, gray=gray, steps_per_epoch=steps_per_epoch)
        self.styles = list(styles)
        self.style_scale = style_scale

    def _channels(self, images: Sequence[torch.Tensor]) -> int:
        return 1 if self.gray else 3  # feature networks such as VGG expect RGB

    def fit_batch(self) -> Batch:
        if self._fit_batch is None:
            batch = _stack(self.samples())
            height, width = batch[IMAGE].shape[-2:]
            target = (
                max(1, round(height * self.style_scale)),
                max(1, round(width * self.style_scale)),
            )
            files = find_images(self.styles)
            styles = [_crop_to_aspect(read_image(source), height / width) for source in files]
            batch[STYLE] = torch.stack(
                [
                    _to_channels(resize_image(style, target), batch[IMAGE].shape[1])
                    for style in styles
                ]
            )
            self._fit_batch = batch
        return self._fit_batch

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_RepeatedBatch(self.fit_batch(), 1), batch_size=None, collate_fn=_keep)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def _crop_to_aspect(image: torch.Tensor, aspect: float) -> torch.Tensor:
    """Centre crop ``image`` to ``height / width == aspect``."""
    height, width = image.shape[-2:]
    if height / width > aspect:
        keep = max(1, round(width * aspect))
        top = (height - keep) // 2
        return image[:, top : top + keep]
    keep = max(1, round(height / aspect))
    left = (width - keep) // 2
    return image[:, :, left : left + keep]
