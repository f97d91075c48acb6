"""The dataset wrappers every mixed-domain DataModule builds its loaders from.

* :class:`DomainDataset`: one source's dataset, as samples of one domain (flag set,
  labels optionally hidden, an optional transform such as the image format).
* :class:`ConcatenatedDataset`: the two domains end to end, what the training sampler
  (:class:`~lightning_synth.datamodules.sampling.MixedDomainSampler`) indexes into.
* :class:`InterleavedDataset`: the two domains merged in proportion, for evaluation.

All three fetch a batch through ``__getitems__`` with one call per underlying dataset,
so a source that renders a batch in one vectorised call (the body renderer) gets the
whole batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, LABEL, Batch
from lightning_synth.datamodules.deferred import FRAME
from lightning_synth.datamodules.sources import as_sample

__all__ = ["DomainDataset", "ConcatenatedDataset", "InterleavedDataset", "fetch"]

#: Changes a list of samples in place of them (the image format, framing, ...).
Transform = Callable[[list[Batch]], list[Batch]]


def fetch(dataset: Dataset, indices: Sequence[int]) -> list:
    """Items ``indices`` of ``dataset``, in one ``__getitems__`` call when it has one.

    Args:
        dataset: any map-style dataset.
        indices: item indices.
    """
    if hasattr(dataset, "__getitems__"):
        return list(dataset.__getitems__(list(indices)))  # type: ignore[attr-defined]
    return [dataset[i] for i in indices]


def _fetch_grouped(
    datasets: Sequence[Dataset], owners: Sequence[int], local: Sequence[int]
) -> list[Batch]:
    """Items ``local[k]`` of ``datasets[owners[k]]``, each dataset fetched in one call."""
    out: list[Batch | None] = [None] * len(owners)
    for which, dataset in enumerate(datasets):
        slots = [k for k, owner in enumerate(owners) if owner == which]
        if slots:
            for slot, item in zip(slots, fetch(dataset, [local[k] for k in slots]), strict=True):
                out[slot] = item
    return out  # type: ignore[return-value]


class DomainDataset(Dataset):
    """A source's dataset as samples of one domain.

    Args:
        source: items are batch-contract samples or ``(image, label)`` pairs.
        domain: ``RENDERED`` or ``REAL``.
        hide_labels: replace every label by ``IGNORE_LABEL`` (unsupervised adaptation).
        transform: applied to each fetched list of samples (e.g. the common image format);
            ``None`` keeps them as the source made them.
    """

    def __init__(
        self,
        source: Dataset,
        domain: int,
        hide_labels: bool = False,
        transform: Transform | None = None,
    ) -> None:
        self.source, self.domain = source, domain
        self.hide_labels, self.transform = hide_labels, transform

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Batch]:
        items = [as_sample(item) for item in fetch(self.source, indices)]
        # Frames still to be rendered on the device (deferred.py) get their flag and
        # hidden labels when they are made.
        made = [k for k, item in enumerate(items) if FRAME not in item]
        if self.transform is not None and made:
            for k, item in zip(made, self.transform([items[k] for k in made]), strict=True):
                items[k] = item
        domain = torch.tensor(self.domain, dtype=torch.long)
        for k in made:
            items[k][DOMAIN] = domain
            if self.hide_labels:
                items[k][LABEL] = torch.full_like(items[k][LABEL], IGNORE_LABEL)
        return items


class ConcatenatedDataset(Dataset):
    """Two datasets end to end (``torch.utils.data.ConcatDataset`` of two), fetching a
    batch with one call per dataset.

    Args:
        first: the first dataset (indices ``0 .. len(first) - 1``).
        second: the second dataset (the indices after them).
    """

    def __init__(self, first: Dataset, second: Dataset) -> None:
        self.datasets = (first, second)
        self.first = len(first)  # type: ignore[arg-type]
        self.length = self.first + len(second)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Batch]:
        indices = [i + self.length if i < 0 else i for i in indices]
        for i in indices:
            if not 0 <= i < self.length:
                raise IndexError(f"index {i} out of range for {self.length} items")
        owners = [int(i >= self.first) for i in indices]
        local = [i - self.first if owner else i for i, owner in zip(indices, owners, strict=True)]
        return _fetch_grouped(self.datasets, owners, local)


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
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Batch]:
        owners = [self.owners[i] for i in indices]
        local = [self.local[i] for i in indices]
        return _fetch_grouped(self.datasets, owners, local)
