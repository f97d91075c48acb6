"""``GeneratedSource``: images sampled from a trained GAN generator, as a domain source.

Use it as the ``rendered`` side of :class:`~lightning_synth.datamodules.MixedDomainDataModule`
to train any task on generated images, e.g. a classifier on the samples of a conditional
GAN (``configs/cgan_digits.yaml``), tested on real digits::

    data:
      class_path: MixedDomainDataModule
      init_args:
        rendered:
          class_path: GeneratedSource
          init_args: {checkpoint: runs/cgan_digits/version_0/checkpoints/last.ckpt}
        real: {class_path: SklearnDigits}
        real_fraction: 0.0
"""

from __future__ import annotations

import zlib
from typing import Literal

import torch
from torch.utils.data import Dataset

from lightning_synth.batch import IGNORE_LABEL, IMAGE, LABEL, Batch, Stage
from lightning_synth.errors import InputError
from lightning_synth.nn.gan import LoadedGenerator, load_generator

from .sources import DomainSource

__all__ = ["GeneratedSource", "GeneratedImages"]

_STAGE_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}
#: Items whose noise comes from one seeded draw (see ``GeneratedSource.noise_and_labels``).
BLOCK = 1024


class GeneratedImages(Dataset):
    """Generated images held in memory as 8-bit values (as image files would be).

    Items are samples ``{image: C x H x W float32 in [0, 1], label}``.

    Args:
        images: ``N x C x H x W`` uint8.
        labels: ``N`` long (``IGNORE_LABEL`` for an unconditional generator).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[Batch]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].float() / 255.0
        return [
            {IMAGE: image, LABEL: label}
            for image, label in zip(images.unbind(0), self.labels[index].unbind(0), strict=True)
        ]


class GeneratedSource(DomainSource):
    """Samples of a GAN checkpoint (written by the ``GAN`` task), with their labels when the
    GAN is conditional (``IGNORE_LABEL`` otherwise).

    Each item is a function of its index alone: the noise of item ``i`` of a stage is row
    ``i mod 1024`` of a draw seeded with a 32-bit hash of ``(seed, stage, i div 1024)``,
    and its label is fixed by ``labels``, so the same checkpoint and seed give the same
    images in any order, batch size, process or run, and train, val and test draw apart.
    A stage's images are made in batches on ``device`` on its first use (generating is far
    cheaper than training on them) and kept in memory as 8-bit values, as image files
    would be: 10,000 28x28 gray images take 7.8 MB.

    Args:
        checkpoint: path of a ``GAN`` checkpoint (``.ckpt``).
        train_length: generated training images.
        val_length: generated validation images.
        test_length: generated test images.
        seed: seed of the noise vectors (and of the labels with ``labels: random``).
        labels: ``balanced`` (item ``i`` gets class ``i mod num_classes``) or ``random``
            (uniform, seeded per item); conditional generators only.
        use_ema: sample from the generator's moving average when the checkpoint has one.
        batch_size: images generated per forward pass.
        device: where to run the generator (``cpu``, ``cuda``, ...).
    """

    def __init__(
        self,
        checkpoint: str,
        train_length: int = 10_000,
        val_length: int = 1_000,
        test_length: int = 1_000,
        seed: int = 0,
        labels: Literal["balanced", "random"] = "balanced",
        use_ema: bool = True,
        batch_size: int = 500,
        device: str = "cpu",
    ) -> None:
        if labels not in ("balanced", "random"):
            raise InputError(f"labels must be 'balanced' or 'random', got {labels!r}")
        lengths = {"train": train_length, "val": val_length, "test": test_length}
        if any(n < 0 for n in lengths.values()) or batch_size < 1:
            raise InputError("lengths must be >= 0 and batch_size >= 1")
        self.checkpoint = checkpoint
        self.lengths = lengths
        self.seed = seed
        self.labels = labels
        self.use_ema = use_ema
        self.batch_size = batch_size
        self.device = device
        self._datasets: dict[str, GeneratedImages] = {}
        # Read the checkpoint now, so a wrong path fails when the config is read.
        self._generator: LoadedGenerator | None = self._load()

    def __getstate__(self) -> dict:
        # Never carry the network or the images when pickled (e.g. as a hyper-parameter).
        return {**self.__dict__, "_datasets": {}, "_generator": None}

    def _load(self) -> LoadedGenerator:
        return load_generator(self.checkpoint, use_ema=self.use_ema, map_location=self.device)

    @property
    def generator(self) -> LoadedGenerator:
        """The generator read from the checkpoint (eval mode, frozen)."""
        if self._generator is None:
            self._generator = self._load()
        return self._generator

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes or super().num_classes

    def block_seed(self, stage: Stage, block: int, what: str = "noise") -> int:
        """Seed (32 bits: what torch's CPU generator uses) of the noise or random labels of
        items ``block * BLOCK`` to ``(block + 1) * BLOCK - 1`` of ``stage``.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            block: block number.
            what: ``"noise"`` or ``"labels"``.
        """
        return zlib.crc32(f"{what}:{self.seed}:{stage}:{block}".encode())

    def noise_and_labels(self, stage: Stage, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise vectors and labels of the items ``indices`` of ``stage``.

        Item ``i`` takes row ``i mod BLOCK`` of the noise drawn for its block, so it depends
        on ``(seed, stage, i)`` alone.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            indices: consecutive positions of the items.
        """
        loaded = self.generator
        zs, labels = [], []
        for block in range(indices.start // BLOCK, (max(indices.stop, 1) - 1) // BLOCK + 1):
            rows = slice(
                max(indices.start - block * BLOCK, 0), min(indices.stop - block * BLOCK, BLOCK)
            )
            rng = torch.Generator().manual_seed(self.block_seed(stage, block))
            zs.append(torch.randn(BLOCK, loaded.latent_dim, generator=rng)[rows])
            index = torch.arange(block * BLOCK, (block + 1) * BLOCK)[rows]
            if loaded.num_classes is None:
                labels.append(torch.full_like(index, IGNORE_LABEL))
            elif self.labels == "balanced":
                labels.append(index % loaded.num_classes)
            else:
                rng = torch.Generator().manual_seed(self.block_seed(stage, block, "labels"))
                labels.append(torch.randint(loaded.num_classes, (BLOCK,), generator=rng)[rows])
        if not zs:
            return torch.empty(0, loaded.latent_dim), torch.empty(0, dtype=torch.long)
        return torch.cat(zs), torch.cat(labels)

    def dataset(self, stage: Stage) -> GeneratedImages:
        if stage not in _STAGE_CODES:
            raise InputError(f"stage must be one of {tuple(_STAGE_CODES)}, got {stage!r}")
        if stage not in self._datasets:
            loaded = self.generator
            length = self.lengths[stage]
            images = torch.empty(
                length, loaded.channels, loaded.image_size, loaded.image_size, dtype=torch.uint8
            )
            labels = torch.empty(length, dtype=torch.long)
            for start in range(0, length, self.batch_size):
                chunk = range(start, min(start + self.batch_size, length))
                z, chunk_labels = self.noise_and_labels(stage, chunk)
                conditional = loaded.num_classes is not None
                sample = loaded.sample(
                    z.to(self.device), chunk_labels.to(self.device) if conditional else None
                )
                images[chunk.start : chunk.stop] = (sample * 255).round().to(torch.uint8).cpu()
                labels[chunk.start : chunk.stop] = chunk_labels
            self._datasets[stage] = GeneratedImages(images, labels)
        return self._datasets[stage]
