"""Training batches of both domains in a fixed ratio, resumable in the middle of an epoch.

:class:`MixedDomainSampler` composes every training batch; :class:`ResumableDataLoader`
and :class:`ResumesMidEpoch` keep a run restored from a mid-epoch checkpoint on the
batches an unbroken run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightning_synth.errors import InputError

__all__ = ["MixedDomainSampler", "ResumableDataLoader", "ResumesMidEpoch", "resume_at"]


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
            raise InputError("the rendered dataset is empty but real_fraction < 1")
        if self.per_batch_real and not num_real:
            raise InputError("the real dataset is empty but real_fraction > 0")
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
