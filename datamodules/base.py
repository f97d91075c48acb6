"""``DomainDataModule``: the one loader factory of the mixed-domain DataModules.

:class:`~lightning_synth.datamodules.MixedDomainDataModule` (images) and
:class:`~lightning_synth.datamodules.BodyDepthDataModule` (depth frames) are this class
with their source-specific parts: how a source makes a stage's dataset (a depth source
renders at the frame size), how samples are brought to a common format (images are
resized and converted), and for depth frames rendering on the training device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lightning_synth.batch import REAL, RENDERED, Stage
from lightning_synth.datamodules.datasets import (
    ConcatenatedDataset,
    DomainDataset,
    InterleavedDataset,
    Transform,
)
from lightning_synth.datamodules.sampling import MixedDomainSampler, ResumesMidEpoch
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.errors import InputError

__all__ = ["DomainDataModule"]


class DomainDataModule(ResumesMidEpoch, LightningDataModule):
    """Rendered and real samples in every training batch; each domain reported apart.

    Training batches hold ``round(batch_size * real_fraction)`` real samples and the rest
    rendered (:class:`~lightning_synth.datamodules.MixedDomainSampler`; a run restored
    from a mid-epoch checkpoint goes on with the batches it had not seen). Validation and
    test sets interleave both domains, each sample flagged with its ``domain``, so tasks
    report ``val/rendered_*`` and ``val/real_*``. Real labels are kept for validation and
    test (they measure the gap) and hidden in training when ``hide_real_labels`` is set
    (unsupervised adaptation). ``predict`` runs over the real test set.

    Subclasses override :meth:`source_dataset` (how a source makes a stage's dataset)
    and :meth:`transform` (the common format), and may set :attr:`collate_fn`.

    Args:
        rendered: source of rendered samples (domain 0).
        real: source of real samples (domain 1).
        batch_size: samples per batch and process.
        real_fraction: fraction of every training batch drawn from the real domain.
        hide_real_labels: hide real training labels (``-1``): unsupervised adaptation.
        num_workers: DataLoader worker processes per training process.
        seed: seed of the batch composition (the epoch is added).
    """

    #: How the loaders collate samples; ``None``: PyTorch's default.
    collate_fn: Callable[[list[Any]], Any] | None = None

    def __init__(
        self,
        rendered: DomainSource,
        real: DomainSource,
        batch_size: int = 64,
        real_fraction: float = 0.5,
        hide_real_labels: bool = False,
        num_workers: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= real_fraction <= 1.0:
            raise InputError(f"real_fraction must lie in [0, 1], got {real_fraction}")
        if batch_size < 1:
            raise InputError(f"batch_size must be positive, got {batch_size}")
        if num_workers < 0:
            raise InputError(f"num_workers must be >= 0, got {num_workers}")
        self.rendered = rendered
        self.real = real
        self.batch_size = batch_size
        self.real_fraction = real_fraction
        self.hide_real_labels = hide_real_labels
        self.num_workers = num_workers
        self.seed = seed
        self._datasets: dict[tuple[Stage, int], DomainDataset] = {}

    @property
    def num_classes(self) -> int:
        """Number of classes of the rendered source."""
        return self.rendered.num_classes

    def prepare_data(self) -> None:
        self.rendered.prepare()
        self.real.prepare()

    # -- what subclasses say -----------------------------------------------------------------
    def source_dataset(self, stage: Stage, domain: int) -> Dataset:
        """The dataset that the source of ``domain`` makes for ``stage``.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            domain: ``RENDERED`` or ``REAL``.
        """
        return self.source(domain).dataset(stage)

    def transform(self, stage: Stage, domain: int) -> Transform | None:
        """What brings the samples of ``domain`` in ``stage`` to the common format.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            domain: ``RENDERED`` or ``REAL``.
        """
        return None

    # -- datasets and loaders ------------------------------------------------------------------
    def source(self, domain: int) -> DomainSource:
        """The source of ``domain`` (``RENDERED`` or ``REAL``)."""
        return self.rendered if domain == RENDERED else self.real

    def hides_labels(self, stage: Stage, domain: int) -> bool:
        """Whether the labels of ``domain`` are hidden in ``stage``."""
        return self.hide_real_labels and domain == REAL and stage == "train"

    def domain_dataset(self, stage: Stage, domain: int) -> DomainDataset:
        """The samples of one domain and stage, flagged and in the common format (cached).

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            domain: ``RENDERED`` or ``REAL``.
        """
        key = (stage, domain)
        if key not in self._datasets:
            self._datasets[key] = DomainDataset(
                self.source_dataset(stage, domain),
                domain,
                hide_labels=self.hides_labels(stage, domain),
                transform=self.transform(stage, domain),
            )
        return self._datasets[key]

    def loader(
        self, dataset: Dataset, loader: type[DataLoader] = DataLoader, **options: Any
    ) -> DataLoader:
        """A loader of ``dataset`` with this DataModule's batch size, workers and collation.

        Args:
            dataset: the dataset.
            loader: the loader class.
            **options: further arguments of the loader (``shuffle``, ``sampler``, ...).
        """
        return loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=self.collate_fn,
            **options,
        )

    def train_dataloader(self) -> DataLoader:
        rendered = self.domain_dataset("train", RENDERED)
        real = self.domain_dataset("train", REAL)
        sampler = MixedDomainSampler(
            len(rendered), len(real), self.batch_size, self.real_fraction, seed=self.seed
        )
        return self.resumable_loader(self.loader, ConcatenatedDataset(rendered, real), sampler)

    def evaluation_loader(self, stage: Stage) -> DataLoader:
        """Both domains of ``stage``, interleaved in proportion, in a fixed order.

        Args:
            stage: ``"val"`` or ``"test"``.
        """
        both = InterleavedDataset(
            self.domain_dataset(stage, RENDERED), self.domain_dataset(stage, REAL)
        )
        return self.loader(both, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self.evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.domain_dataset("test", REAL), shuffle=False)
