"""Where the samples of one domain come from: the one source contract.

A :class:`DomainSource` hands out one ``torch.utils.data.Dataset`` per stage. Its items
are samples of the batch contract (:mod:`lightning_synth.batch`), not yet collated:
``{"image": C x H x W float, "label": class or H x W map, ...}`` with any optional keys
(``joints``, ``intrinsics``, ``valid``). A source knows nothing of the other domain: the
DataModule sets ``domain``, hides labels where asked, and (for images) brings every
source to one size and channel count. A dataset may fetch a whole batch at once through
``__getitems__`` (the body renderer renders a batch in one vectorised call).

An item may also be an ``(image, label)`` pair, read as ``{"image": image, "label":
label}``, so a source written as a plain image dataset works unchanged.

:class:`DepthSource` is the same contract for depth frames, whose datasets are made at
the DataModule's frame size (a renderer renders at it; recorded frames are resized and
their intrinsics follow).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch.utils.data import Dataset

from lightning_synth.batch import IMAGE, LABEL, Batch, Stage
from lightning_synth.rendering.body import PART_NAMES

__all__ = ["DomainSource", "DepthSource", "Stage", "as_sample"]


class DomainSource(ABC):
    """A source of samples for one domain, split into train/val/test datasets."""

    @abstractmethod
    def dataset(self, stage: Stage) -> Dataset:
        """Return the dataset of ``stage``; items are batch-contract samples (see the module).

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
        """

    def prepare(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Download or check files once per node (called from ``prepare_data``)."""

    @property
    def num_classes(self) -> int:
        """Number of classes the labels index into."""
        return 10


class DepthSource(DomainSource):
    """A source of depth frames (see :class:`DomainSource`), made at the frame size asked for.

    Items carry ``image`` (``1 x H x W`` depth in metres, 0 = no reading), ``label`` (the
    ``H x W`` part map), ``joints`` (``J x 3``, NaN where unknown), ``intrinsics`` and
    ``valid``.
    """

    @abstractmethod
    def dataset(self, stage: Stage, height: int, width: int) -> Dataset:  # type: ignore[override]
        """The frames of ``stage`` at ``height x width``.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            height: frame height in pixels.
            width: frame width in pixels.
        """

    @property
    def num_classes(self) -> int:
        """Number of body parts the label maps index into."""
        return len(PART_NAMES)


def as_sample(item: Any) -> Batch:
    """A source's item as a fresh sample dict (the source's own dict is never changed).

    Args:
        item: a batch-contract dict, or an ``(image, label)`` pair.
    """
    if isinstance(item, dict):
        return dict(item)
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], torch.Tensor):
        return {IMAGE: item[0], LABEL: torch.as_tensor(item[1], dtype=torch.long)}
    raise TypeError(
        f"a source's dataset yielded {type(item).__name__}; items must be dicts with "
        f"{IMAGE!r} and {LABEL!r} (see lightning_synth.batch) or (image, label) pairs"
    )
