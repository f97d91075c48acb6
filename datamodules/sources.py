"""Where the images of one domain come from.

A :class:`DomainSource` hands out one ``torch.utils.data.Dataset`` per stage. Its
items are ``(image, label)`` pairs: ``image`` a float ``C x H x W`` tensor in
[0, 1] at the source's native size and channel count, ``label`` an ``int`` class
index (or ``IGNORE_LABEL``). :class:`~lightning_synth.datamodules.MixedDomainDataModule`
brings every source to one size and channel count and adds the ``domain`` flag,
so a source knows nothing of the other domain or of the batch contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch.utils.data import Dataset

from lightning_synth.batch import Stage

__all__ = ["DomainSource", "Stage"]


class DomainSource(ABC):
    """A source of images for one domain, split into train/val/test datasets."""

    @abstractmethod
    def dataset(self, stage: Stage) -> Dataset:
        """Return the dataset of ``stage``; items are ``(image C x H x W float, label int)``.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
        """

    def prepare(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Download or check files once per node (called from ``prepare_data``)."""

    @property
    def num_classes(self) -> int:
        """Number of classes the labels index into."""
        return 10
