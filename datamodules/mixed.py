"""``MixedDomainDataModule``: rendered and real images in every training batch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler

from lightning_synth.batch import IGNORE_LABEL, REAL, RENDERED, Batch, Stage, make_sample
from lightning_synth.datamodules.sources import DomainSource

__all__ = [
    "MixedDomainDataModule",
    "MixedDomainSampler",
    "ResumableDataLoader",
    "ResumesMidEpoch",
    "DomainDataset",
    "InterleavedDataset",
    "to_format",
]


def to_format(image: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Bring a ``C x H x W`` image in [0, 1] to ``channels x image_size x image_size``.

    Args:
        image: float image in [0, 1].
        image_size: output height and width.
        channels: 1 (luminance) or 3 (gray images are repeated).
    """
    if image.ndim != 3:
        raise ValueError(
            f"a source yielded an image of shape {tuple(image.shape)}; expected C x H x W"
        )
    if image.shape[0] == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
        image = (image * weights).sum(dim=0, keepdim=True)
    elif image.shape[0] == 1 and channels == 3:
        image = image.expand(3, -1, -1)
    elif image.shape[0] != channels:
        raise ValueError(f"cannot turn a {image.shape[0]}-channel image into {channels} channels")
    if image.shape[1:] != (image_size, image_size):
        image = F.interpolate(
            image[None],
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0].clamp(0, 1)
    return image.contiguous()


class DomainDataset(Dataset):
    """Wrap a source dataset: common format, domain flag, optionally hidden labels.

    Args:
        source: items are ``(image, label)``.
        domain: ``RENDERED`` or ``REAL``.
        image_size: output height and width.
        channels: output channels.
        hide_labels: replace every label by ``IGNORE_LABEL`` (unsupervised adaptation).
    """

    def __init__(
        self,
        source: Dataset,
        domain: int,
        image_size: int,
        channels: int,
        hide_labels: bool = False,
    ) -> None:
        self.source = source
        self.domain = domain
        self.image_size = image_size
        self.channels = channels
        self.hide_labels = hide_labels

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Batch:
        image, label = self.source[index]
        image = to_format(image, self.image_size, self.channels)
        return make_sample(image, IGNORE_LABEL if self.hide_labels else label, self.domain)


class InterleavedDataset(Dataset):
    """Two datasets merged in proportion, so any prefix (``limit_val_batches``) and any
    DDP shard holds both domains in the ratio of the whole.

    Args:
        first: the first dataset.
        second: the second dataset.
    """

    def __init__(self, first: Dataset, second: Dataset) -> None:
        self.datasets = (first, second)
        sizes = [len(first), len(second)]  # type: ignore[arg-type]
        positions = torch.cat([(torch.arange(n) + 0.5) / max(n, 1) for n in sizes])
        owners = torch.cat([torch.full((n,), which) for which, n in enumerate(sizes)])
        local = torch.cat([torch.arange(n) for n in sizes])
        order = torch.argsort(positions, stable=True)
        self.owners = owners[order].tolist()
        self.local = local[order].tolist()

    def __len__(self) -> int:
        return len(self.owners)

    def __getitem__(self, index: int) -> Batch:
        return self.datasets[self.owners[index]][self.local[index]]


class MixedDomainSampler(DistributedSampler):
    """Indices into ``ConcatDataset([rendered, real])`` so that every batch holds exactly
    ``batch_size - num_real`` rendered and ``num_real`` real samples.

    It subclasses ``DistributedSampler`` and shards by itself (each process draws its own
    batches from one shared permutation per epoch), so Lightning leaves it alone under DDP.
    The epoch is one pass over the larger domain (its last partial batch dropped); the other
    domain is cycled, reshuffled on each pass.

    Args:
        num_rendered: length of the rendered dataset (first in the concatenation).
        num_real: length of the real dataset.
        batch_size: samples per batch and process.
        real_fraction: fraction of each batch that is real, in [0, 1].
        seed: seed of the permutations (the epoch is added).
        num_replicas: number of processes (from ``torch.distributed`` when ``None``).
        rank: this process (from ``torch.distributed`` when ``None``).
    """

    def __init__(
        self,
        num_rendered: int,
        num_real: int,
        batch_size: int,
        real_fraction: float,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            num_replicas, rank = num_replicas or 1, rank or 0
        super().__init__(
            range(num_rendered + num_real), num_replicas=num_replicas, rank=rank, seed=seed
        )
        self.batch_size = batch_size
        self.per_batch_real = round(batch_size * real_fraction)
        self.per_batch_rendered = batch_size - self.per_batch_real
        if self.per_batch_rendered and not num_rendered:
            raise ValueError("the rendered dataset is empty but real_fraction < 1")
        if self.per_batch_real and not num_real:
            raise ValueError("the real dataset is empty but real_fraction > 0")
        self.num_rendered = num_rendered
        self.num_real = num_real
        passes = []
        if self.per_batch_rendered:
            passes.append(num_rendered / self.per_batch_rendered)
        if self.per_batch_real:
            passes.append(num_real / self.per_batch_real)
        self.batches_per_replica = max(1, math.floor(max(passes) / self.num_replicas))
        self._resume: tuple[int, int] | None = None

    def resume(self, epoch: int, batches: int) -> None:
        """Leave out the first ``batches`` batches of this process in epoch ``epoch``: a
        run restored from a checkpoint taken mid-epoch goes on with the batches it had
        not seen yet. Later epochs are whole again.

        Args:
            epoch: the epoch the checkpoint was taken in.
            batches: batches of that epoch this process had already taken.
        """
        # A whole epoch taken: Lightning goes on with the next one, which is whole.
        whole = 0 < batches < self.batches_per_replica
        self._resume = (int(epoch), int(batches)) if whole else None

    def set_epoch(self, epoch: int) -> None:
        if self._resume is not None and epoch != self._resume[0]:
            self._resume = None
        super().set_epoch(epoch)

    def __len__(self) -> int:
        return self.batches_per_replica * self.batch_size

    def _stream(self, length: int, offset: int, generator: torch.Generator) -> Iterator[int]:
        while True:
            yield from (offset + i for i in torch.randperm(length, generator=generator).tolist())

    def __iter__(self) -> Iterator[int]:
        # Every iteration of the checkpoint's epoch skips: Lightning may start one early
        # (to count the steps for a learning-rate schedule) and another when training starts.
        skip = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        rendered = (
            self._stream(self.num_rendered, 0, generator) if self.per_batch_rendered else None
        )
        real = (
            self._stream(self.num_real, self.num_rendered, generator)
            if self.per_batch_real
            else None
        )
        for global_batch in range(self.batches_per_replica * self.num_replicas):
            # Skipped batches are still drawn, so the streams stay where they would be.
            batch = [next(rendered) for _ in range(self.per_batch_rendered)] if rendered else []
            batch += [next(real) for _ in range(self.per_batch_real)] if real else []
            if global_batch % self.num_replicas == self.rank:
                if global_batch // self.num_replicas >= skip:
                    yield from batch


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`MixedDomainSampler` that resumes mid-epoch.

    Lightning saves its ``state_dict`` (the epoch, and the batches of it training has
    taken) in checkpoints and hands it back on restore, so a run resumed from a checkpoint
    taken in the middle of an epoch sees the rest of that epoch's batches, as a run that
    was never stopped does, instead of the epoch's first batches again.

    Args:
        *args: as for ``DataLoader`` (its ``sampler`` must be a ``MixedDomainSampler``).
        position: where training stands (asked when a checkpoint is saved; see
            :meth:`ResumesMidEpoch.training_position`); ``None``: at the start.
        **kwargs: as for ``DataLoader``.
    """

    def __init__(
        self, *args: Any, position: Callable[[], dict[str, int]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.position = position

    def state_dict(self) -> dict[str, int]:
        if self.position is None:
            return {"epoch": 0, "batches": 0, "finished": 0}
        return self.position()

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if isinstance(self.sampler, MixedDomainSampler):
            resume_at(self.sampler, state_dict)


def resume_at(sampler: MixedDomainSampler, position: dict[str, int]) -> None:
    """Set ``sampler`` to go on from ``position`` (a :meth:`ResumesMidEpoch.training_position`).

    The epoch is set here, not only by Lightning at the epoch's start, because a resumed
    fit keeps the batch iterator it made before that, and with worker processes the
    iterator draws its indices when it is made.

    Args:
        sampler: the training sampler.
        position: ``{"epoch": e, "batches": n, "finished": 0 or 1}``.
    """
    epoch, batches = int(position["epoch"]), int(position["batches"])
    if position.get("finished", 0):
        sampler.set_epoch(epoch + 1)
    else:
        sampler.set_epoch(epoch)
        sampler.resume(epoch, batches)


class ResumesMidEpoch:
    """The part of a DataModule that keeps its training batches in order across a restart.

    Where training stands in its epoch goes into checkpoints twice: as the training
    loader's state (:class:`ResumableDataLoader`) and as the DataModule's, which Lightning
    restores before anything asks for the loader. The second is needed because Lightning
    (2.5-2.6) skips the loader's state when a learning-rate schedule asked for
    ``estimated_stepping_batches`` first (Lightning issue #20550).
    """

    trainer: Any
    _resume_at: dict[str, int] | None = None

    def training_position(self) -> dict[str, int]:
        """``{"epoch": e, "batches": n, "finished": f}``: training has taken ``n`` batches
        of epoch ``e``, all of them when ``f`` is 1."""
        trainer = self.trainer
        epochs = None if trainer is None else trainer.fit_loop.epoch_progress.current
        if epochs is None or epochs.started == 0:
            return {"epoch": 0, "batches": 0, "finished": 0}
        taken = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        # An epoch cut short by max_steps counts as done: a resumed fit starts the next.
        done = epochs.processed >= epochs.started or taken >= trainer.num_training_batches
        return {"epoch": int(epochs.started) - 1, "batches": taken, "finished": int(done)}

    def state_dict(self) -> dict[str, Any]:
        return {"training_position": self.training_position()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_at = state_dict.get("training_position")

    def resumable_loader(
        self, loader: Callable[..., DataLoader], dataset: Dataset, sampler: MixedDomainSampler
    ) -> DataLoader:
        """``loader(dataset, ResumableDataLoader, ...)`` over ``sampler``, which skips what
        a restored checkpoint's run had already taken.

        Args:
            loader: the DataModule's loader factory (``dataset, loader class, **options``).
            dataset: the training dataset.
            sampler: its ``MixedDomainSampler``.
        """
        if self._resume_at is not None:  # once: a later fit starts afresh
            resume_at(sampler, self._resume_at)
            self._resume_at = None
        return loader(
            dataset,
            ResumableDataLoader,
            sampler=sampler,
            drop_last=True,
            position=self.training_position,
        )


class MixedDomainDataModule(ResumesMidEpoch, LightningDataModule):
    """Rendered and real images in every training batch; each domain reported apart.

    Training batches hold ``round(batch_size * real_fraction)`` real samples and the
    rest rendered. Validation and test sets concatenate both domains, each sample
    carrying its ``domain`` flag, so tasks report ``val/rendered_*`` and ``val/real_*``.
    Real labels are kept for validation and test (they measure the gap), and hidden
    in training when ``hide_real_labels`` is set (unsupervised adaptation).
    ``predict`` runs over the real test set.

    Args:
        rendered: source of rendered images (domain 0).
        real: source of real images (domain 1).
        image_size: both domains are resized to this height and width.
        channels: both domains are converted to this many channels.
        batch_size: samples per batch and process.
        real_fraction: fraction of every training batch drawn from the real domain.
        hide_real_labels: hide real training labels (``-1``): unsupervised adaptation.
        num_workers: DataLoader worker processes per training process.
        seed: seed of the batch composition (the epoch is added).
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
    ) -> None:
        super().__init__()
        if not 0.0 <= real_fraction <= 1.0:
            raise ValueError(f"real_fraction must lie in [0, 1], got {real_fraction}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
        self.rendered = rendered
        self.real = real
        self.image_size = image_size
        self.channels = channels
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

    def domain_dataset(self, stage: Stage, domain: int) -> DomainDataset:
        """The dataset of one domain and stage, in the common format (cached).

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            domain: ``RENDERED`` or ``REAL``.
        """
        key = (stage, domain)
        if key not in self._datasets:
            source = self.rendered if domain == RENDERED else self.real
            hide = self.hide_real_labels and domain == REAL and stage == "train"
            self._datasets[key] = DomainDataset(
                source.dataset(stage), domain, self.image_size, self.channels, hide_labels=hide
            )
        return self._datasets[key]

    def _loader(
        self, dataset: Dataset, loader: type[DataLoader] = DataLoader, **kwargs: object
    ) -> DataLoader:
        return loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,  # type: ignore[arg-type]
        )

    def train_dataloader(self) -> DataLoader:
        rendered = self.domain_dataset("train", RENDERED)
        real = self.domain_dataset("train", REAL)
        sampler = MixedDomainSampler(
            len(rendered),
            len(real),
            self.batch_size,
            self.real_fraction,
            seed=self.seed,
        )
        return self.resumable_loader(self._loader, ConcatDataset([rendered, real]), sampler)

    def _evaluation_loader(self, stage: Stage) -> DataLoader:
        both = InterleavedDataset(
            self.domain_dataset(stage, RENDERED), self.domain_dataset(stage, REAL)
        )
        return self._loader(both, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.domain_dataset("test", REAL), shuffle=False)
