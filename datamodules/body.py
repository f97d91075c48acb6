"""``BodyDepthDataModule``: rendered and "real" body depth frames in every training batch.

Dense counterpart of :class:`~lightning_synth.datamodules.MixedDomainDataModule`: items are
depth maps (metres, 0 = no reading) with a part-label map, not images with a class. It
reuses that module's batch composition (:class:`MixedDomainSampler`) and its evaluation
interleaving, and keeps the renderer's vectorised batch rendering (``__getitems__``).

A :class:`DepthSource` hands out one dataset per stage at the DataModule's size; its
items are batch-contract dicts with ``image`` ``1 x H x W``, ``label`` ``H x W``,
``joints`` ``J x 3`` (NaN where unknown), ``intrinsics`` and ``valid``. Two sources:
:class:`RenderedBodySource` (the body renderer, optionally through the sensor model) and
:class:`~lightning_synth.datamodules.DepthFolder` (real frames on disk, in
``depth_folder.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, LABEL, REAL, RENDERED, Batch, Stage
from lightning_synth.datamodules.deferred import (
    DEFERRED,
    FRAME,
    DeferredFrames,
    DeferredSource,
    collate_deferred,
    complete_batch,
)
from lightning_synth.datamodules.mixed import (
    InterleavedDataset,
    MixedDomainSampler,
    ResumesMidEpoch,
)
from lightning_synth.rendering.body import BodyRenderer, RenderedBodies
from lightning_synth.rendering.sensor import DepthSensorNoise

__all__ = ["DepthSource", "RenderedBodySource", "BodyDepthDataModule", "DomainView"]

# Frames of each stage start at their own offset of the renderer's index, so train, val
# and test never share a frame.
_STAGE_OFFSET: dict[str, int] = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}


class DepthSource(ABC):
    """Where the depth frames of one domain come from, split into train/val/test."""

    @abstractmethod
    def dataset(self, stage: Stage, height: int, width: int) -> Dataset:
        """The frames of ``stage`` at ``height x width``, as batch-contract dicts.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            height: frame height in pixels.
            width: frame width in pixels.
        """

    def prepare(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Check files once per node (called from ``prepare_data``)."""


class RenderedBodySource(DepthSource):
    """Rendered people (:class:`~lightning_synth.rendering.body.BodyRenderer`), on the fly.

    With ``noise`` the frames go through the Kinect-like sensor model, which is how the
    default recipes make their "real" domain (another ``seed``, so other people and poses).

    Args:
        train_length: training frames per epoch (rendered on demand, never stored).
        val_length: validation frames.
        test_length: test frames.
        seed: renderer seed; frame ``i`` of a stage depends only on ``(seed, stage, i)``.
        noise: sensor model applied to every frame; ``None`` keeps the clean renders.
        distance_range: horizontal camera-to-person distance in metres.
        yaw_range: rotation of the person about the vertical in degrees (0 faces the camera).
    """

    def __init__(
        self,
        train_length: int = 20_000,
        val_length: int = 256,
        test_length: int = 512,
        seed: int = 0,
        noise: DepthSensorNoise | None = None,
        distance_range: tuple[float, float] = (1.5, 4.0),
        yaw_range: tuple[float, float] = (-180.0, 180.0),
    ) -> None:
        lengths = {"train": train_length, "val": val_length, "test": test_length}
        if min(lengths.values()) < 0:
            raise ValueError(f"frame counts must be >= 0, got {lengths}")
        self.lengths = lengths
        self.seed = seed
        self.noise = noise
        self.distance_range = tuple(distance_range)
        self.yaw_range = tuple(yaw_range)
        # Fail on bad renderer arguments now, at config time, not in a worker mid-fit.
        self.dataset("val", 8, 8)

    def dataset(self, stage: Stage, height: int, width: int) -> RenderedBodies:
        renderer = BodyRenderer(
            height,
            width,
            seed=self.seed,
            distance_range=self.distance_range,  # type: ignore[arg-type]
            yaw_range=self.yaw_range,  # type: ignore[arg-type]
        )
        return RenderedBodies(
            self.lengths[stage], renderer, noise=self.noise, offset=_STAGE_OFFSET[stage]
        )


def _fetch(dataset: Dataset, indices: Sequence[int]) -> list[Batch]:
    """Items ``indices`` of ``dataset``, in one ``__getitems__`` call when it has one."""
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
            for slot, item in zip(slots, _fetch(dataset, [local[k] for k in slots]), strict=True):
                out[slot] = item
    return out  # type: ignore[return-value]


class DomainView(Dataset):
    """A source's frames flagged with their domain, labels optionally hidden.

    Args:
        source: dataset of batch-contract dicts.
        domain: ``RENDERED`` or ``REAL``.
        hide_labels: replace every part label by ``IGNORE_LABEL`` (unsupervised adaptation).
    """

    def __init__(self, source: Dataset, domain: int, hide_labels: bool = False) -> None:
        self.source, self.domain, self.hide_labels = source, domain, hide_labels

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Batch]:
        items = _fetch(self.source, indices)
        domain = torch.tensor(self.domain, dtype=torch.long)
        for item in items:
            item[DOMAIN] = domain
            if self.hide_labels and FRAME not in item:  # deferred frames: hidden once made
                item[LABEL] = torch.full_like(item[LABEL], IGNORE_LABEL)
        return items


class _Concatenated(Dataset):
    """``ConcatDataset`` of two datasets that fetches a batch with one call per dataset."""

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
        owners = [int(i >= self.first) for i in indices]
        local = [i - self.first if owner else i for i, owner in zip(indices, owners, strict=True)]
        return _fetch_grouped(self.datasets, owners, local)


class _Interleaved(InterleavedDataset):
    """``InterleavedDataset`` that fetches a batch with one call per dataset."""

    def __getitems__(self, indices: Sequence[int]) -> list[Batch]:
        owners = [self.owners[i] for i in indices]
        local = [self.local[i] for i in indices]
        return _fetch_grouped(self.datasets, owners, local)


class BodyDepthDataModule(ResumesMidEpoch, LightningDataModule):
    """Rendered and real body depth frames in every training batch; each domain reported apart.

    Training batches hold ``round(batch_size * real_fraction)`` real frames and the rest
    rendered. Validation and test sets interleave both domains, each frame flagged, so a
    task reports ``val/rendered_*`` and ``val/real_*``. Real labels are kept for
    validation and test and hidden in training when ``hide_real_labels`` is set.
    ``predict`` runs over the real test set.

    The default real domain is *not* real: it is rendered frames (another seed) passed
    through the Kinect-like sensor model. Point ``real`` at a :class:`~lightning_synth.datamodules.DepthFolder` for
    frames recorded with a depth camera.

    Args:
        rendered: source of the rendered frames (domain 0); default clean renders, seed 0.
        real: source of the real frames (domain 1); default renders with seed 1 through
            :class:`~lightning_synth.rendering.sensor.DepthSensorNoise`.
        height: frame height in pixels (a Kinect v1 gives 240 at QVGA).
        width: frame width in pixels (320 at QVGA).
        batch_size: frames per batch and process.
        real_fraction: fraction of every training batch drawn from the real domain.
        hide_real_labels: hide the real training labels (``-1``): unsupervised adaptation.
        num_workers: DataLoader worker processes per training process (each renders).
        seed: seed of the batch composition (the epoch is added).
        render_on: where rendered sources make their frames: ``workers`` (the DataLoader
            workers, on the CPU) or ``device`` (the training device, in the training
            process, as each batch is moved there: on a GPU the batched renderer outruns
            CPU workers; workers then only load frames from disk, so ``num_workers: 0``
            does when none come from there). Same frames either way. ``device`` needs the
            Trainer (or a call of ``transfer_batch_to_device``).
    """

    def __init__(
        self,
        rendered: DepthSource | None = None,
        real: DepthSource | None = None,
        height: int = 120,
        width: int = 160,
        batch_size: int = 16,
        real_fraction: float = 0.5,
        hide_real_labels: bool = False,
        num_workers: int = 2,
        seed: int = 0,
        render_on: Literal["workers", "device"] = "workers",
    ) -> None:
        super().__init__()
        if render_on not in ("workers", "device"):
            raise ValueError(f"render_on must be 'workers' or 'device', got {render_on!r}")
        if not 0.0 <= real_fraction <= 1.0:
            raise ValueError(f"real_fraction must lie in [0, 1], got {real_fraction}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if height < 8 or width < 8:
            raise ValueError(f"frames must be at least 8 x 8 pixels, got {height} x {width}")
        self.rendered = rendered if rendered is not None else RenderedBodySource(seed=0)
        self.real = (
            real if real is not None else RenderedBodySource(seed=1, noise=DepthSensorNoise())
        )
        self.height, self.width = int(height), int(width)
        self.batch_size = batch_size
        self.real_fraction = real_fraction
        self.hide_real_labels = hide_real_labels
        self.num_workers = num_workers
        self.seed = seed
        self.render_on = render_on
        self._datasets: dict[tuple[Stage, int], DomainView] = {}
        self._deferred: list[DeferredSource] = []

    def prepare_data(self) -> None:
        self.rendered.prepare()
        self.real.prepare()

    def domain_dataset(self, stage: Stage, domain: int) -> DomainView:
        """The frames of one domain and stage (cached).

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            domain: ``RENDERED`` or ``REAL``.
        """
        key = (stage, domain)
        if key not in self._datasets:
            source = self.rendered if domain == RENDERED else self.real
            hide = self.hide_real_labels and domain == REAL and stage == "train"
            dataset = source.dataset(stage, self.height, self.width)
            if self.render_on == "device" and isinstance(dataset, RenderedBodies):
                self._deferred.append(DeferredSource(dataset, domain, hide))
                dataset = DeferredFrames(len(dataset), slot=len(self._deferred) - 1)
            self._datasets[key] = DomainView(dataset, domain, hide_labels=hide)
        return self._datasets[key]

    def _loader(
        self, dataset: Dataset, loader: type[DataLoader] = DataLoader, **options: object
    ) -> DataLoader:
        return loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_deferred if self.render_on == "device" else None,
            **options,  # type: ignore[arg-type]
        )

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if not (isinstance(batch, dict) and DEFERRED in batch):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

        def move(part: Batch) -> Batch:
            return super(BodyDepthDataModule, self).transfer_batch_to_device(
                part, device, dataloader_idx
            )

        return complete_batch(batch, self._deferred, device, move)

    def train_dataloader(self) -> DataLoader:
        rendered = self.domain_dataset("train", RENDERED)
        real = self.domain_dataset("train", REAL)
        sampler = MixedDomainSampler(
            len(rendered), len(real), self.batch_size, self.real_fraction, seed=self.seed
        )
        return self.resumable_loader(self._loader, _Concatenated(rendered, real), sampler)

    def _evaluation_loader(self, stage: Stage) -> DataLoader:
        both = _Interleaved(self.domain_dataset(stage, RENDERED), self.domain_dataset(stage, REAL))
        return self._loader(both, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.domain_dataset("test", REAL), shuffle=False)
